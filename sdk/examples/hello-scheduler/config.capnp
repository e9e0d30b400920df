# Config of the example `first-fit` scheduler.
@0xb5c3a9f1e7d2c4a3;

struct FirstFitConfig {
  reserveMemoryBytes @0 :UInt64 = 0;  # keep this much free on every node
}
