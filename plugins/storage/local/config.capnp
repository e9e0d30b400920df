# Config of the `local` storage plugin (the slot's `config:` section).
@0xd0a4a5e6d4e3b1f1;

struct LocalConfig {
  pool @0 :Text = "/var/lib/vmhost/pool";  # absolute directory holding the node's volumes
}
