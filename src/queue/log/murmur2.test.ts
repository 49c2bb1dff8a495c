import assert from 'node:assert/strict';
import { test } from 'node:test';
import { murmur2, partitionForKey, toPositive } from './murmur2.js';

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

test("murmur2 gives the values in Apache Kafka's own UtilsTest.testMurmur2", () => {
  // apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2),
  // as quoted with its commit link by kafka_ex's test/kafka_ex/utils/murmur_test.exs.
  const cases: [string, number][] = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
  ];
  for (const [s, want] of cases) assert.equal(murmur2(utf8(s)), want, s);
});

test("murmur2 gives the values kafkajs generated with Java for its Java-compatible partitioner (every tail length)", () => {
  // tulios/kafkajs src/producer/partitioners/defaultJava/murmur2.spec.js ("Generated with
  // src/producer/partitioners/defaultJava/Test.java", a copy of Kafka's Utils.murmur2). kafkajs's
  // older "legacy" table differs: that partitioner was not Java-compatible.
  const cases: Record<string, number> = {
    '0': 971027396,
    '1': -1993445489,
    '128': -326012175,
    '2187': -1508407203,
    '16384': -325739742,
    '78125': -1654490814,
    '279936': 1462227128,
    '823543': -2014198330,
    '2097152': 607668903,
    '4782969': -1182699775,
    '10000000': -1830336757,
    '19487171': -1603849305,
    '35831808': -857013643,
    '62748517': -1167431028,
    '105413504': -381294639,
    '170859375': -1658323481,
    '100:48069': 1009543857,
  };
  for (const [s, want] of Object.entries(cases)) assert.equal(murmur2(utf8(s)), want, s);
});

test('toPositive clears the sign bit like Kafka (not Math.abs), and partitions are in range', () => {
  assert.equal(toPositive(-2147483648), 0);
  assert.equal(toPositive(-1), 0x7fffffff);
  assert.equal(toPositive(5), 5);
  assert.equal(partitionForKey(utf8('21'), 10), toPositive(-973932308) % 10);
  assert.equal(partitionForKey(utf8('21'), 10), 0); // 1173551340 % 10
  for (let i = 0; i < 200; i++) {
    const p = partitionForKey(utf8(`key-${i}`), 7);
    assert.ok(Number.isInteger(p) && p >= 0 && p < 7);
  }
  // the empty key hashes too (Kafka hashes a zero-length key; only a null key is round-robined)
  assert.equal(murmur2(new Uint8Array(0)), murmur2(Buffer.alloc(0)));
});
