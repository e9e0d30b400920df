// Decoding a plugin's config (JSON text from the host's config file) into a
// Cap'n Proto struct the plugin declares, with unknown keys refused:
//
//   # config.capnp, built with vmhost_add_plugin(... SCHEMAS config.capnp)
//   struct LocalConfig { pool @0 :Text = "/var/lib/vmhost/pool"; }
//
//   capnp::MallocMessageBuilder message;
//   auto config = vmhost::sdk::decodeConfig<LocalConfig>(ctx, message);
//
// A bad config throws vmhost::sdk::Error(INVALID_ARGUMENT, "config: ..."),
// which fails the plugin's create() with that message.
#pragma once

#include <vmhost/plugin.hpp>

#include <capnp/compat/json.h>

namespace vmhost::sdk {

template <typename T>
typename T::Reader decodeConfig(const PluginContext& ctx, capnp::MallocMessageBuilder& message) {
  auto root = message.initRoot<T>();
  capnp::JsonCodec codec;
  codec.setRejectUnknownFields(true);
  codec.setMaxNestingDepth(32);
  auto json = ctx.configJson();
  try {
    codec.decode(kj::ArrayPtr<const char>(json.data(), json.size()), root);
  } catch (const kj::Exception& e) {
    throw Error(VMHOST_ERR_INVALID_ARGUMENT, std::string("config: ") + e.getDescription().cStr());
  }
  return root.asReader();
}

}  // namespace vmhost::sdk
