// TLS between nodes (caf_openssl): with certificates configured, nodes whose certificates are signed by
// the cluster's CA form a cluster and forward to each other, and a peer that presents no certificate, or
// one signed by another CA, is refused by a node's gateway. The CA and the certificates are made here, with
// the openssl command line, in a temporary directory.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include "support/cluster_harness.hpp"
#include "support/http_client.hpp"
#include "support/node_process.hpp"
#include "support/scratch_database.hpp"
#include "support/shop.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using mercato::test::cluster_harness;
using mercato::test::cluster_options;
using mercato::test::http_client;
using mercato::test::lease_owner;
using mercato::test::scratch_database;
using namespace mercato::test::shop;

namespace {

struct pki {
  fs::path dir;
  explicit pki(const std::string& name)
      : dir(fs::temp_directory_path() / ("mercato-tls-" + name + "-" + random_uuid())) {
    fs::create_directories(dir);
  }
  ~pki() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  pki(const pki&) = delete;
  pki& operator=(const pki&) = delete;
  std::string path(const std::string& file) const { return (dir / file).string(); }
  void run(const std::string& cmd) const {
    const int rc = mercato::test::run_command("cd '" + dir.string() + "' && " + cmd + " >/dev/null 2>&1");
    REQUIRE_MESSAGE(rc == 0, "failed: " << cmd);
  }
  // A CA (ca.pem, ca.key).
  void make_ca(const std::string& cn) const {
    run("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=" + cn + "'");
  }
  // A certificate <name>.pem / <name>.key signed by this directory's CA.
  void make_cert(const std::string& name) const {
    run("openssl req -newkey rsa:2048 -nodes -keyout " + name + ".key -out " + name + ".csr -subj '/CN=" + name +
        "'");
    run("openssl x509 -req -in " + name + ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out " + name +
        ".pem -days 2");
  }
};


// Reaches a node's gateway through CAF (caf_openssl, an actor system of its own) presenting `cert`; true
// when the TLS and the BASP handshakes succeeded and the gateway's handle came back.
bool caf_can_connect(std::uint16_t port, const std::string& cert, const std::string& key, const std::string& ca) {
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = cert;
  cfg.openssl_key = key;
  cfg.openssl_cafile = ca;
  caf::actor_system sys{cfg};
  return static_cast<bool>(caf::openssl::remote_actor<caf::actor>(sys, "127.0.0.1", port));
}

struct probe_result {
  bool node_verified = false;  // the node's certificate checked out against the cluster's CA (client side)
  bool served = false;         // the node sent its BASP handshake: it accepted this peer
  bool refused = false;        // the node ended the connection (an alert or a close), within the timeout
};

// Reaches a node's gateway with plain OpenSSL, trusting the cluster's CA (so the client never objects to
// the node) and presenting `cert` (none when empty). A node that accepts a peer sends CAF's BASP server
// handshake at once; one that refuses it ends the TLS connection.
probe_result probe(std::uint16_t port, const std::string& cert, const std::string& key, const std::string& ca) {
  probe_result out;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_client_method()), SSL_CTX_free};
  REQUIRE(ctx);
  REQUIRE(SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr) == 1);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!cert.empty()) {
    REQUIRE(SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) == 1);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval limit{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl{SSL_new(ctx.get()), SSL_free};
  SSL_set_fd(ssl.get(), fd);
  errno = 0;
  const bool connected = SSL_connect(ssl.get()) == 1;
  out.node_verified = SSL_get_verify_result(ssl.get()) == X509_V_OK && SSL_get0_peer_certificate(ssl.get()) != nullptr;
  if (!connected) {
    // TLS 1.2: the node's refusal ends the handshake itself.
    out.refused = errno != EAGAIN && errno != EWOULDBLOCK;
  } else {
    // TLS 1.3: the client's handshake is done before the node has checked its certificate; the node's
    // verdict is the first thing read.
    char buf[64];
    errno = 0;
    const int n = SSL_read(ssl.get(), buf, sizeof buf);
    out.served = n > 0;
    out.refused = n <= 0 && errno != EAGAIN && errno != EWOULDBLOCK;
  }
  ERR_clear_error();
  ssl.reset();
  ::close(fd);
  return out;
}

}  // namespace

TEST_CASE("nodes with TLS on form a cluster and refuse a peer without a valid certificate") {
  pki cluster_ca{"cluster"};
  cluster_ca.make_ca("mercato test cluster CA");
  cluster_ca.make_cert("node");
  cluster_ca.make_cert("client");
  pki rogue_ca{"rogue"};
  rogue_ca.make_ca("someone else");
  rogue_ca.make_cert("rogue");

  scratch_database db;
  cluster_options o;
  o.dsn = db.dsn();
  o.redis_url = mercato::test::test_redis_url();
  o.tls_certificate = cluster_ca.path("node.pem");
  o.tls_key = cluster_ca.path("node.key");
  o.tls_ca = cluster_ca.path("ca.pem");
  cluster_harness cluster{o};
  cluster.add();
  cluster.add();
  REQUIRE(cluster.await_settled());
  REQUIRE(cluster.shards_by_node().size() == 2);

  // The two nodes reach each other over TLS: carts whose shards live on either node, each created through
  // one node and used through the other (until both owners were seen; all on one node after 40: 2^-39).
  http_client a{cluster.http_port(0)}, b{cluster.http_port(1)};
  const auto product = product_with_stock(a, db.dsn(), 1, 1000);
  std::map<std::string, int> owners;
  for (int i = 0; i < 40 && owners.size() < 2; ++i) {
    customer who;
    auto [first, second] = i % 2 == 0 ? std::pair<http_client&, http_client&>{a, b}
                                       : std::pair<http_client&, http_client&>{b, a};
    const auto cart = new_cart(first, who);
    ++owners[lease_owner(db.dsn(), "cart", cart)];
    add(second, who, cart, product, 1);
    auto seen = first.get("/api/v1/carts/" + cart, bearer(who.token));
    REQUIRE_MESSAGE(seen.status == 200, seen.body);
    CHECK(seen.json().at("items").as_array().size() == 1);
  }
  CHECK(owners.size() == 2);

  const auto gateway = cluster.cluster_port(0);
  REQUIRE(gateway != 0);
  // A peer with a certificate from the cluster's CA gets through, with CAF as with plain OpenSSL ...
  CHECK(caf_can_connect(gateway, cluster_ca.path("client.pem"), cluster_ca.path("client.key"),
                        cluster_ca.path("ca.pem")));
  const auto valid = probe(gateway, cluster_ca.path("client.pem"), cluster_ca.path("client.key"),
                           cluster_ca.path("ca.pem"));
  CHECK(valid.node_verified);
  CHECK(valid.served);
  // ... one whose certificate another CA signed does not (the client trusts the cluster's CA and verified
  // the node: the node is the one refusing) ...
  CHECK_FALSE(caf_can_connect(gateway, rogue_ca.path("rogue.pem"), rogue_ca.path("rogue.key"),
                              cluster_ca.path("ca.pem")));
  const auto rogue = probe(gateway, rogue_ca.path("rogue.pem"), rogue_ca.path("rogue.key"), cluster_ca.path("ca.pem"));
  CHECK(rogue.node_verified);
  CHECK_FALSE(rogue.served);
  CHECK(rogue.refused);
  // ... and neither does one without a certificate (caf_openssl cannot even be configured that way).
  const auto anonymous = probe(gateway, "", "", cluster_ca.path("ca.pem"));
  CHECK(anonymous.node_verified);
  CHECK_FALSE(anonymous.served);
  CHECK(anonymous.refused);

  // The cluster is still whole after the refused peers.
  customer who;
  const auto cart = new_cart(b, who);
  add(a, who, cart, product, 2);
  auto seen = b.get("/api/v1/carts/" + cart, bearer(who.token));
  REQUIRE_MESSAGE(seen.status == 200, seen.body);
}
