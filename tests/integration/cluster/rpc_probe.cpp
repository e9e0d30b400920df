// A hostile or misconfigured node, for the cluster protocol tests: speaks
// host/rpc/cluster.capnp to a controller (or not) and reports what happened.
//
//   rpc_probe ADDR:PORT join NAME TOKEN [VERSION [HOLD_S]]  join; "joined" (exit 0)
//                                                   or "refused: ..." (exit 3); with
//                                                   HOLD_S, keep the session open and
//                                                   silent (no heartbeats) that long
//   rpc_probe ADDR:PORT oversized NAME TOKEN        join with a 3 MiB node object
//   rpc_probe ADDR:PORT huge                        one 16 MiB message (over the
//                                                   reader's traversal limit)
//   rpc_probe ADDR:PORT garbage                     64 KiB of random bytes
//   rpc_probe ADDR:PORT tls-join NAME CA CERT KEY   join over TLS with that client
//                                                   certificate (files), no token
//   rpc_probe ADDR:PORT foreign-ca NAME CA          join over TLS with a client
//                                                   certificate for NAME from a CA
//                                                   made on the spot (not the cluster's)
// For huge and garbage: exit 0 when the controller closed the connection.
#include "api/objects.h"
#include "common/pki.h"
#include "rpc/cluster.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>
#include <kj/compat/tls.h>

#include <cstdio>
#include <random>
#include <string>

namespace {

std::string nodeJson(const std::string& name, size_t padding) {
  vmhost::api::Node node;
  node.metadata.name = name;
  if (padding > 0) node.metadata.annotations["vmhost.io/padding"] = std::string(padding, 'x');
  return vmhost::api::storeValue(node);
}

class Events final : public vmhost::rpc::NodeEvents::Server {
 protected:
  kj::Promise<void> vmsChanged(VmsChangedContext) override { return kj::READY_NOW; }
};

struct ClientTls {
  std::string caPem, certPem, keyPem;
};

int join(kj::AsyncIoContext& io, kj::NetworkAddress& addr, const std::string& name,
         const std::string& token, uint32_t version, size_t padding,
         const ClientTls* tlsFiles = nullptr, int holdSeconds = 0) {
  auto stream = addr.connect().wait(io.waitScope);
  kj::Own<kj::TlsContext> tls;
  kj::Maybe<kj::TlsCertificate> ca;
  kj::Maybe<kj::TlsKeypair> keypair;
  if (tlsFiles != nullptr) {
    ca = kj::TlsCertificate(tlsFiles->caPem.c_str());
    keypair = kj::TlsKeypair{kj::TlsPrivateKey(tlsFiles->keyPem.c_str()),
                             kj::TlsCertificate(tlsFiles->certPem.c_str())};
    kj::TlsContext::Options o;
    o.useSystemTrustStore = false;
    o.trustedCertificates = kj::arrayPtr(&KJ_ASSERT_NONNULL(ca), 1);
    o.defaultKeypair = KJ_ASSERT_NONNULL(keypair);
    tls = kj::heap<kj::TlsContext>(kj::mv(o));
    try {
      stream = tls->wrapClient(kj::mv(stream), "127.0.0.1").wait(io.waitScope);
      // The server verifies the client certificate after its handshake
      // step; a refusal shows as the connection closing on the first call.
    } catch (const kj::Exception& e) {
      std::printf("refused: TLS: %s\n", e.getDescription().cStr());
      return 3;
    }
  }
  capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::CLIENT);
  auto rpc = capnp::makeRpcClient(network);
  capnp::MallocMessageBuilder vatMessage;
  auto vat = vatMessage.initRoot<capnp::rpc::twoparty::VatId>();
  vat.setSide(capnp::rpc::twoparty::Side::SERVER);
  auto cluster = rpc.bootstrap(vat).castAs<vmhost::rpc::Cluster>();
  auto req = cluster.joinRequest();
  auto r = req.initRequest();
  r.setProtocolVersion(version);
  r.setToken(token);
  r.setNodeName(name);
  std::string json = nodeJson(name, padding);
  r.setNode(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(json.data()), json.size()));
  req.setEvents(kj::heap<Events>());
  try {
    auto response = req.send().wait(io.waitScope);
    (void)response.getSession();
    std::printf("joined\n");
    std::fflush(stdout);
    if (holdSeconds > 0) {
      io.provider->getTimer().afterDelay(holdSeconds * kj::SECONDS).wait(io.waitScope);
    }
    return 0;
  } catch (const kj::Exception& e) {
    std::printf("refused: %s\n", e.getDescription().cStr());
    return 3;
  }
}

// Writes `bytes` and waits (bounded) for the peer to close the connection.
int sendAndExpectClose(kj::AsyncIoContext& io, kj::NetworkAddress& addr,
                       kj::Array<const kj::byte> bytes) {
  auto stream = addr.connect().wait(io.waitScope);
  auto& timer = io.provider->getTimer();
  try {
    stream->write(bytes.begin(), bytes.size()).wait(io.waitScope);
  } catch (const kj::Exception&) {
    std::printf("closed (during the write)\n");
    return 0;
  }
  auto buf = kj::heapArray<kj::byte>(4096);
  for (int i = 0; i < 64; ++i) {
    try {
      auto n = timer.timeoutAfter(10 * kj::SECONDS, stream->tryRead(buf.begin(), 1, buf.size()))
                   .wait(io.waitScope);
      if (n == 0) {
        std::printf("closed\n");
        return 0;
      }
    } catch (const kj::Exception& e) {
      std::string d = e.getDescription().cStr();
      if (e.getType() == kj::Exception::Type::DISCONNECTED) {
        std::printf("closed (%s)\n", d.c_str());
        return 0;
      }
      std::printf("still open: %s\n", d.c_str());
      return 1;
    }
  }
  std::printf("still open\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: rpc_probe ADDR:PORT join|oversized|huge|garbage ...\n");
    return 2;
  }
  std::string mode = argv[2];
  auto io = kj::setupAsyncIo();
  auto addr = io.provider->getNetwork().parseAddress(argv[1]).wait(io.waitScope);
  if ((mode == "join" || mode == "oversized") && argc >= 5) {
    uint32_t version =
        argc >= 6 ? static_cast<uint32_t>(std::stoul(argv[5])) : vmhost::rpc::PROTOCOL_VERSION;
    int hold = argc >= 7 ? std::stoi(argv[6]) : 0;
    return join(io, *addr, argv[3], argv[4], version, mode == "oversized" ? 3u << 20 : 0, nullptr,
                hold);
  }
  if (mode == "tls-join" && argc >= 7) {
    ClientTls t;
    auto ca = vmhost::pki::readFile(argv[4]);
    auto cert = vmhost::pki::readFile(argv[5]);
    auto key = vmhost::pki::readFile(argv[6]);
    if (!ca.ok() || !cert.ok() || !key.ok()) {
      std::fprintf(stderr, "rpc_probe: cannot read the TLS files\n");
      return 2;
    }
    t = {ca.value(), cert.value(), key.value()};
    return join(io, *addr, argv[3], "", vmhost::rpc::PROTOCOL_VERSION, 0, &t);
  }
  if (mode == "foreign-ca" && argc >= 5) {
    auto ca = vmhost::pki::readFile(argv[4]);
    auto foreign = vmhost::pki::createCa("some other CA", 1);
    auto key = vmhost::pki::generateKey();
    if (!ca.ok() || !foreign.ok() || !key.ok()) return 2;
    auto cert = vmhost::pki::issue(foreign.value(), key.value(), argv[3], {}, false, true, 1);
    if (!cert.ok()) return 2;
    ClientTls t{ca.value(), cert.value(), key.value()};
    return join(io, *addr, argv[3], "", vmhost::rpc::PROTOCOL_VERSION, 0, &t);
  }
  if (mode == "huge") {
    // A well-formed Cap'n Proto frame whose single segment is 16 MiB: more
    // words than the controller's reader accepts.
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<vmhost::rpc::JoinRequest>();
    root.initNode(16u << 20);
    auto words = capnp::messageToFlatArray(message);
    auto bytes = words.asBytes();
    return sendAndExpectClose(io, *addr, kj::heapArray<const kj::byte>(bytes));
  }
  if (mode == "garbage") {
    std::mt19937 rng(42);
    auto bytes = kj::heapArray<kj::byte>(64 * 1024);
    for (auto& b : bytes) b = static_cast<kj::byte>(rng());
    // A segment table claiming absurd sizes first, then noise.
    bytes[0] = 0xff;
    bytes[1] = 0xff;
    bytes[2] = 0x00;
    bytes[3] = 0x00;
    kj::Array<const kj::byte> frozen = kj::mv(bytes);
    return sendAndExpectClose(io, *addr, kj::mv(frozen));
  }
  std::fprintf(stderr, "rpc_probe: bad arguments\n");
  return 2;
}
