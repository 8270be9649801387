// ws_server over TLS (wss://): TLS 1.2 or later, modern ciphers, optional client certificates.
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <websocketpp/config/asio.hpp>

#include "io/ws_server_impl.hpp"

namespace mqttws {
namespace {

using tls_context = asio::ssl::context;

// Mozilla's "intermediate" TLS 1.2 suites (forward secrecy, AEAD only); TLS 1.3 uses OpenSSL's
// own (all AEAD).
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// The context new handshakes use: replaced by reload_tls.
using current_context = std::shared_ptr<tls_context>;

// At the start of every handshake: switch the connection to the newest context. websocketpp binds
// a connection to a context when it creates it, which for the next connection to be accepted is
// before a reload; without this, the first handshake after a reload would still get the old
// certificate.
int use_newest_context(SSL* ssl, int* /*alert*/, void* arg) {
    const auto* current = static_cast<const current_context*>(arg);
    SSL_CTX* newest = (*current)->native_handle();
    if (SSL_get_SSL_CTX(ssl) != newest) {
        SSL_set_SSL_CTX(ssl, newest);
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(newest), SSL_CTX_get_verify_callback(newest));
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

// `current`: where the newest context is kept (it outlives every context made here).
std::shared_ptr<tls_context> make_context(const tls_options& tls, const current_context* current) {
    auto ctx = std::make_shared<tls_context>(tls_context::tls_server);
    SSL_CTX_set_client_hello_cb(ctx->native_handle(), use_newest_context,
                                const_cast<current_context*>(current));
    ctx->set_options(tls_context::default_workarounds | tls_context::no_sslv2 |
                     tls_context::no_sslv3 | tls_context::no_tlsv1 | tls_context::no_tlsv1_1 |
                     tls_context::single_dh_use);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    if (SSL_CTX_set_cipher_list(ctx->native_handle(), tls12_ciphers) != 1) {
        throw std::runtime_error("TLS: the cipher list was refused");
    }
    std::error_code ec;
    ctx->use_certificate_chain_file(tls.cert_file, ec);
    if (ec)
        throw std::runtime_error("TLS: cannot load --tls-cert " + tls.cert_file + ": " +
                                 ec.message());
    ctx->use_private_key_file(tls.key_file, tls_context::pem, ec);
    if (ec)
        throw std::runtime_error("TLS: cannot load --tls-key " + tls.key_file + ": " +
                                 ec.message());
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
        throw std::runtime_error("TLS: --tls-key " + tls.key_file +
                                 " is not the key of --tls-cert " + tls.cert_file);
    }
    if (!tls.ca_file.empty()) {
        ctx->load_verify_file(tls.ca_file, ec);
        if (ec)
            throw std::runtime_error("TLS: cannot load --tls-ca " + tls.ca_file + ": " +
                                     ec.message());
        // Client certificates are asked for and verified when presented; clients without one
        // can still authenticate with a token.
        ctx->set_verify_mode(asio::ssl::verify_peer);
    }
    return ctx;
}

}  // namespace

std::unique_ptr<ws_server::backend> make_tls_backend(asio::io_context& io,
                                                     ws_server_options options,
                                                     ws_server::handlers h,
                                                     std::shared_ptr<connection_ledger> ledger) {
    using config = ws_detail::config<websocketpp::config::asio_tls>;
    // The context new handshakes get; reload_tls replaces it (connections keep theirs: each
    // holds its own reference).
    auto current = std::make_shared<current_context>();
    *current = make_context(options.tls, current.get());  // throws on bad files, before listening
    const bool client_certs = !options.tls.ca_file.empty();
    const tls_options files = options.tls;
    return std::make_unique<ws_detail::basic_backend<config>>(
        io, std::move(options), std::move(h), std::move(ledger),
        [current](auto& server) {
            server.set_tls_init_handler(
                [current](websocketpp::connection_hdl) { return *current; });
        },
        [client_certs](auto& con) {
            if (!client_certs) return std::string();
            SSL* ssl = con.get_socket().native_handle();
            X509* cert = SSL_get_peer_certificate(ssl);
            if (cert == nullptr) return std::string();
            std::string cn;
            char buf[256];
            if (SSL_get_verify_result(ssl) == X509_V_OK &&
                X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf,
                                          sizeof buf) > 0) {
                cn = buf;
            }
            X509_free(cert);
            return cn;
        },
        [current, files]() -> std::optional<std::string> {
            try {
                *current = make_context(files, current.get());
                return std::nullopt;
            } catch (const std::exception& e) {
                return std::string(e.what());
            }
        });
}

}  // namespace mqttws
