// The host config file (YAML; JSON is valid YAML): which plugin fills each
// slot, and with what config. Parsing checks every key; loading the plugins
// is separate (loadPlugins), so `vmhost check-config` and start-up share it.
//
//   pluginDir: /usr/lib/vmhost/plugins   # optional
//   plugins:
//     scheduler: {name: default, config: {cpuAllocationRatio: 4}}
//     storage:   {name: local, config: {pool: /var/lib/vmhost/pool}}
//     network:   {path: /opt/acme/vmhost-network-acme.so}
//     migration: {name: precopy}
//   store: {backend: sqlite}            # optional (store/settings.h)
#pragma once

#include "result.h"
#include "store/settings.h"

#include <vmhost/loader/plugin_host.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace vmhost {

// Slots in kind order: index = kind - 1.
inline constexpr std::array<vmhost_plugin_kind, 4> kAllKinds = {
    VMHOST_KIND_SCHEDULER, VMHOST_KIND_STORAGE, VMHOST_KIND_NETWORK, VMHOST_KIND_MIGRATION};

struct PluginSlot {
  vmhost_plugin_kind kind = VMHOST_KIND_INVALID;
  std::string name;        // from `name:` (or the default), empty when `path:` is given
  std::string path;        // resolved file path
  std::string configJson;  // the `config:` section as JSON; "{}" when absent
  bool fromFile = false;   // named in the config file (not a default)
};

// The node agent's settings (`node:` section).
struct NodeSettings {
  std::string name;  // `nodeName:`; default: the machine's hostname
  std::map<std::string, std::string>
      labels;                           // added to the Node (kubernetes.io/hostname is automatic)
  int64_t stopGracePeriodSeconds = 30;  // after an ACPI shutdown, how long before a forced stop
  int64_t heartbeatSeconds = 10;
  int64_t resyncSeconds = 10;     // level-triggered: every VM is reconciled at least this often
  double cpuAllocationRatio = 0;  // 0: the scheduler plugin's default
  double memoryAllocationRatio = 0;
  std::string libvirtEndpoint;  // `libvirtEndpoint:`, e.g. qemu+tls://host-a/system
  // Where the node writes the certificates of libvirt's TLS migration
  // (ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
  // client-key.pem: its own, from the cluster CA), which qemu.conf's
  // migrate_tls_x509_cert_dir names. Empty: <dataDir>/node/migration-tls.
  std::string migrationTlsDir;
};

// The cluster's node <-> controller link (`cluster:` section).
struct ClusterSettings {
  std::string listen = "127.0.0.1:7070";  // controller: where nodes connect
  std::string controller;                 // node: the controller's ADDRESS:PORT
  std::string joinToken;                  // `joinToken:`, or read from `joinTokenFile:`
  int64_t heartbeatTimeoutSeconds = 40;   // controller: NotReady after this long
  // controller: a node NotReady this long is lost; its VMs with shared
  // disks are restarted elsewhere (controller/recovery.h).
  int64_t deadNodeGracePeriodSeconds = 300;
  // node: the cluster CA (vmhost init's pki/ca.crt). Set: the node gets its
  // certificate from apiServer with the join token once, then joins with
  // mutual TLS. Unset: plain TCP with the token (tests on loopback).
  std::string caFile;
  std::string apiServer;  // node: https://HOST:PORT of the controller's API
  // Plain TCP with only the join token, no TLS, no API token: for test
  // clusters on a private network. Without it a controller needs `vmhost
  // init`'s PKI and a node needs caFile.
  bool insecure = false;
};

// Live migrations (`migrations:` section; the controller side), with
// KubeVirt's defaults.
struct MigrationSettings {
  int64_t parallelMigrationsPerCluster = 5;       // running at once in the cluster
  int64_t parallelOutboundMigrationsPerNode = 2;  // running at once from one node
  // A target that has not prepared within this long fails the migration.
  int64_t targetPrepareTimeoutSeconds = 300;
};

struct HostConfig {
  std::string file;       // the config file, as given (for messages)
  std::string pluginDir;  // resolved
  std::array<PluginSlot, 4> plugins;
  std::string dataDir = "/var/lib/vmhost";  // the store, consoles, local state
  std::string listen = "127.0.0.1:8080";    // the API's address
  // libvirt connection URI; "{dataDir}" is replaced by dataDir.
  std::string libvirtUri = "qemu:///system";
  NodeSettings node;
  ClusterSettings cluster;
  store::StoreSettings store;  // `store:`; the controller side only
  // `events.ttlSeconds`: Events are deleted this long after they last
  // happened (kube-apiserver's --event-ttl).
  int64_t eventTtlSeconds = 3600;
  MigrationSettings migrations;

  const PluginSlot& slot(vmhost_plugin_kind kind) const { return plugins[kind - 1]; }
};

// The name a slot gets when the config does not fill it.
std::string defaultPluginName(vmhost_plugin_kind kind);
// Where `name` resolves to: <dir>/vmhost-<kind>-<name>.so
std::string pluginFileName(vmhost_plugin_kind kind, const std::string& name);
// The plugin directory when the config names none: $VMHOST_PLUGIN_DIR, else
// <directory of this executable>/../lib/vmhost/plugins.
std::string defaultPluginDir();

// Reads and checks a config file. Errors are one line: "FILE[:LINE:COL]: cause".
Result<HostConfig> loadConfigFile(const std::string& path);
// The same from text; `file` names it in messages and anchors relative paths.
Result<HostConfig> parseConfig(const std::string& text, const std::string& file);
// A config with every slot at its default (no file).
HostConfig defaultConfig();

// libvirtUri with "{dataDir}" replaced.
std::string resolvedLibvirtUri(const HostConfig& config);

// The loaded, created plugins of a config.
struct Plugins {
  std::array<std::unique_ptr<PluginInstance>, 4> instances;
  PluginInstance& get(vmhost_plugin_kind kind) { return *instances[kind - 1]; }
};

// Loads, checks and creates the plugin of every slot. The first failure is
// returned as one line naming the config file, the slot and the cause.
Result<Plugins> loadPlugins(const HostConfig& config);

}  // namespace vmhost
