/** A FIFO queue: the cache workers' pending requests, the Redis client's pending commands. */

/**
 * A queue with O(1) shift (Array#shift is O(n) on long arrays). Items live in items[head, tail);
 * an emptied queue starts again at 0 by moving the indexes, not by setting the array's length,
 * which V8 does in its runtime (a session's ledger shifts one group per ReadyForQuery, issue 21).
 */
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  private tail = 0;

  get size(): number {
    return this.tail - this.head;
  }

  push(x: T): void {
    if (this.tail === this.items.length) this.items.push(x);
    else this.items[this.tail] = x;
    this.tail++;
  }

  /** The i-th item from the head (0: the next shift()), or undefined. */
  at(i: number): T | undefined {
    return i >= 0 && i < this.tail - this.head ? this.items[this.head + i] : undefined;
  }

  shift(): T | undefined {
    if (this.head === this.tail) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.tail) {
      this.head = 0;
      this.tail = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.tail) {
      this.items = this.items.slice(this.head, this.tail);
      this.tail -= this.head;
      this.head = 0;
    }
    return x;
  }

  /** Everything left, in order; the queue is empty afterwards. */
  drain(): T[] {
    const rest = this.items.slice(this.head, this.tail) as T[];
    this.items = [];
    this.head = 0;
    this.tail = 0;
    return rest;
  }
}
