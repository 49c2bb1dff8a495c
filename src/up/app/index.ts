/** The demo application of `archlab up`: a product catalogue with users and orders. See app.ts. */
export { createDemoApp, type DemoApp, type DemoAppOptions, type DemoAppStats, type DatabaseSpec, type CacheSpec, type OrderPlacedEvent } from './app.js';
export { PaymentsClient, OUTBOUND_RESULTS, type OutboundOptions, type OutboundResult, type Authorization, type ChargeRequest } from './payments-client.js';
export { generateCatalogue, CATEGORIES, MAX_SEED_PRODUCTS, MAX_SEED_USERS, type Product, type User, type Order, type ProductPatch, type SeedData, type SeedOptions } from './data.js';
export { openSqliteCatalogue, openPostgresCatalogue, MAX_SEARCH_LIMIT, SEARCH_SQL, type CatalogueDb, type PlaceOrderResult } from './db.js';
export { AppError, findAppError, type AppErrorCode } from './errors.js';
