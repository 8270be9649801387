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

std::shared_ptr<tls_context> make_context(const tls_options& tls) {
    auto ctx = std::make_shared<tls_context>(tls_context::tls_server);
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
                                                     ws_server::handlers h) {
    using config = ws_detail::config<websocketpp::config::asio_tls>;
    auto context = make_context(options.tls);  // throws on bad files, before anything listens
    const bool client_certs = !options.tls.ca_file.empty();
    return std::make_unique<ws_detail::basic_backend<config>>(
        io, std::move(options), std::move(h),
        [context](auto& server) {
            server.set_tls_init_handler([context](websocketpp::connection_hdl) { return context; });
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
        });
}

}  // namespace mqttws
