/**
 * The demo application's data: a product catalogue with users and orders, and the deterministic
 * seed that fills it. Pure: no I/O, randomness from an injected core Random, so one seed gives the
 * same catalogue on every machine and every engine.
 */
import { InvalidArgumentError, type Random } from '../../core/index.js';

export interface Product {
  id: number;
  name: string;
  category: string;
  /** Price in cents (integer). */
  priceCents: number;
  /** Units in stock; an order takes them in a database transaction. */
  stock: number;
  description: string;
}

export interface User {
  id: number;
  name: string;
  email: string;
}

export interface Order {
  id: number;
  userId: number;
  productId: number;
  qty: number;
  /** Epoch ms when the order was placed. */
  createdMs: number;
}

/** The catalogue fields of a product that a product update may change (stock belongs to orders). */
export type ProductPatch = Partial<Pick<Product, 'name' | 'category' | 'priceCents' | 'description'>>;

/** The product categories of the seed; a search by category uses the index over `category`. */
export const CATEGORIES = [
  'books',
  'music',
  'games',
  'garden',
  'kitchen',
  'tools',
  'toys',
  'sports',
  'office',
  'lighting',
  'outdoor',
  'audio',
] as const;

/** Seeds larger than these are refused: the seed runs at start and must stay quick and bounded. */
export const MAX_SEED_PRODUCTS = 1_000_000;
export const MAX_SEED_USERS = 1_000_000;

const ADJECTIVES = ['Compact', 'Classic', 'Sturdy', 'Quiet', 'Bright', 'Smart', 'Light', 'Deluxe', 'Folding', 'Vintage', 'Modular', 'Pocket'];
const NOUNS: Record<(typeof CATEGORIES)[number], readonly string[]> = {
  books: ['Novel', 'Atlas', 'Cookbook', 'Field Guide'],
  music: ['Vinyl Record', 'Songbook', 'Ukulele', 'Metronome'],
  games: ['Board Game', 'Puzzle', 'Card Deck', 'Dice Set'],
  garden: ['Trowel', 'Planter', 'Hose Reel', 'Seed Kit'],
  kitchen: ['Kettle', 'Skillet', 'Knife Block', 'Teapot'],
  tools: ['Drill', 'Wrench Set', 'Level', 'Tape Measure'],
  toys: ['Robot', 'Kite', 'Train Set', 'Plush Bear'],
  sports: ['Football', 'Yoga Mat', 'Racket', 'Water Bottle'],
  office: ['Stapler', 'Desk Lamp', 'Notebook', 'Pen Set'],
  lighting: ['Lantern', 'Floor Lamp', 'String Lights', 'Night Light'],
  outdoor: ['Tent', 'Sleeping Bag', 'Camp Stove', 'Backpack'],
  audio: ['Headphones', 'Speaker', 'Turntable', 'Microphone'],
};
const FIRST = ['Ada', 'Alan', 'Grace', 'Edsger', 'Barbara', 'Ken', 'Leslie', 'Donald', 'Frances', 'John', 'Radia', 'Tony'];
const LAST = ['Lovelace', 'Turing', 'Hopper', 'Dijkstra', 'Liskov', 'Thompson', 'Lamport', 'Knuth', 'Allen', 'Backus', 'Perlman', 'Hoare'];

function pick<T>(random: Random, list: readonly T[]): T {
  return list[random.int(list.length)]!;
}

function checkCount(what: string, n: number, max: number): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`${what} must be an integer in 1..${max}, got ${n}`);
}

export interface SeedOptions {
  /** Products to make, 1..1,000,000 (ids 1..products). */
  products: number;
  /** Users to make, 1..1,000,000 (ids 1..users). */
  users: number;
  /** The randomness; a SeededRandom makes the catalogue replayable. */
  random: Random;
}

export interface SeedData {
  products: Product[];
  users: User[];
}

/**
 * A catalogue of `products` products and `users` users, drawn from `random` only (same Random seed,
 * same data). Stock is 0..200 with about one product in twenty sold out, so an order can meet 409.
 */
export function generateCatalogue(opts: SeedOptions): SeedData {
  checkCount('products', opts.products, MAX_SEED_PRODUCTS);
  checkCount('users', opts.users, MAX_SEED_USERS);
  const { random } = opts;
  const products: Product[] = new Array<Product>(opts.products);
  for (let i = 0; i < opts.products; i++) {
    const category = pick(random, CATEGORIES);
    const adjective = pick(random, ADJECTIVES);
    const noun = pick(random, NOUNS[category]);
    const soldOut = random.int(20) === 0;
    products[i] = {
      id: i + 1,
      name: `${adjective} ${noun}`,
      category,
      priceCents: 199 + random.int(49_801),
      stock: soldOut ? 0 : 1 + random.int(200),
      description: `A ${adjective.toLowerCase()} ${noun.toLowerCase()} from the ${category} aisle (item ${i + 1}).`,
    };
  }
  const users: User[] = new Array<User>(opts.users);
  for (let i = 0; i < opts.users; i++) {
    const first = pick(random, FIRST);
    const last = pick(random, LAST);
    users[i] = { id: i + 1, name: `${first} ${last}`, email: `${first.toLowerCase()}.${last.toLowerCase()}.${i + 1}@example.com` };
  }
  return { products, users };
}
