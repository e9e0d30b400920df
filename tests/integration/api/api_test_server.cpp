// A test-only API server over a SqliteStore: for poking at the API with
// kubectl by hand (tests start the server in-process instead).
//   api_test_server DATA_DIR [LISTEN_ADDR] [NODE_NAME]
// Prints "port N" once listening; runs until SIGINT/SIGTERM.
#include "api/objects.h"
#include "apiserver/server.h"
#include "store/sqlite/sqlite_store.h"

#include <csignal>
#include <cstdio>
#include <iostream>

#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: api_test_server DATA_DIR [LISTEN_ADDR] [NODE_NAME]\n";
    return 2;
  }
  auto store = vmhost::store::SqliteStore::open(argv[1]);
  if (!store) {
    std::cerr << store.error().describe() << "\n";
    return 1;
  }
  if (argc > 3) {
    vmhost::api::Node node;
    node.metadata.name = argv[3];
    node.status.capacity.cpu = vmhost::api::parseQuantity("2").value();
    node.status.capacity.memory = vmhost::api::parseQuantity("8Gi").value();
    node.status.allocatable = node.status.capacity;
    node.status.conditions.push_back({"Ready", "True", "NodeReady", "node is ready", ""});
    auto r = vmhost::api::registerNode(**store, node);
    if (!r) std::cerr << r.error().describe() << "\n";
  }
  vmhost::metrics::Registry metrics;
  vmhost::apiserver::ServerOptions opts;
  opts.listenAddress = argc > 2 ? argv[2] : "127.0.0.1:0";
  vmhost::apiserver::Server server(**store, metrics, opts);
  auto port = server.start();
  if (!port) {
    std::cerr << port.error().describe() << "\n";
    return 1;
  }
  std::cout << "port " << *port << std::endl;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  server.stop();
  return 0;
}
