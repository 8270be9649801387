// The WebSocket (and plain HTTP) listener, over websocketpp on standalone Asio, plain or TLS.
//
// It accepts WebSocket upgrades on any path, gives each connection a `connection_id`, and reports
// opens (with the credentials of the handshake), text frames and closes to the handlers. Plain
// HTTP GETs (health checks, metrics) go to `on_http`. Upgrades from an Origin not in
// `allowed_origins` get 403 (clients that send no Origin are not browsers, and are let
// through: Origin only protects browsers from other sites); beyond `max_connections`, 503. `send()`
// writes an encoded frame; a frame shared by many recipients is framed once and the same buffer is
// queued on every connection. TCP_NODELAY is set on every socket (websocketpp does not, and Nagle
// would hold small frames back ~40 ms).
//
// websocketpp is included only by ws_server_impl.hpp, which only ws_server.cpp (plain) and
// ws_server_tls.cpp (TLS) include: each translation unit that includes it costs ~25 s to
// compile, so this header keeps it out of everything else.
//
// With --threads N the bridge runs N of them, one per I/O thread, on one port (io_threads.hpp);
// they share one connection_ledger, so that the connection limits hold for the bridge as a whole.
//
// Thread safety: all members are used from the io_context's one thread; handlers run there.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/actions.hpp"
#include "core/admission.hpp"
#include "core/authenticator.hpp"
#include "io/client_links.hpp"
#include "io/connection_ledger.hpp"

namespace asio {
class io_context;
}

namespace mqttws {

struct tls_options {
    std::string cert_file;  // PEM certificate chain; TLS is on when set
    std::string key_file;   // PEM private key
    std::string ca_file;    // PEM CAs for client certificates (optional); their CN identifies
    bool enabled() const { return !cert_file.empty(); }
};

struct ws_server_options {
    // "::" (the default) is every address, IPv4 included, so that "localhost" works whether a
    // client resolves it to ::1 or 127.0.0.1; on a host without IPv6 it falls back to 0.0.0.0.
    std::string bind_address = "::";
    std::uint16_t port = 8080;               // 0: any free port (see local_endpoint())
    std::size_t max_frame_bytes = 1u << 20;  // larger incoming messages are closed with 1009
    int listen_backlog = 1024;
    std::size_t max_connections = 0;  // WebSockets (0: no limit); beyond it upgrades get HTTP 503
    // Sockets before their upgrade, per address, handshakes per second per address (see
    // core/admission.hpp); beyond them a socket is closed at once, an upgrade answered 429.
    admission_limits admission;
    // From the accept, the TLS handshake (if any) and the upgrade request must be done by then.
    std::int64_t handshake_timeout_ms = 5000;
    std::string server_header = "mqttws";      // the Server header of every HTTP answer
    std::vector<std::string> allowed_origins;  // empty: any Origin; otherwise exact matches
    // Peers whose X-Forwarded-For is believed: a client behind such a proxy is known by the
    // last address the proxy added (for the audit log and the failed-login limit).
    std::vector<std::string> trusted_proxies;
    tls_options tls;
    // Set by io_threads for its listeners: connection ids first_id, first_id + id_stride, …
    // (so that an id tells its thread), and SO_REUSEPORT, so that they share the port.
    connection_id first_id = 1;
    connection_id id_stride = 1;
    bool reuse_port = false;
};

// A plain HTTP request (not an upgrade): what the handlers look at.
struct http_request {
    std::string target;  // the request target: path and query
    std::string if_none_match;
    std::string accept_encoding;
};

struct http_response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::string cache_control = "no-store";
    std::vector<std::pair<std::string, std::string>> headers;  // more headers (ETag, Location…)
};

struct close_info {
    std::uint16_t code = 0;  // the close code sent or received (1006: no close frame)
    std::string reason;
    bool by_peer = false;  // the client closed (or vanished), not the bridge
};

// The address and port a listener actually bound (the port is the kernel's choice for port 0).
struct listen_endpoint {
    std::string address;
    std::uint16_t port = 0;
};

// Per thread, for /metrics (io_threads: "io-0"…, and "engine", the app's thread; a single
// ws_server has none).
struct io_thread_stats {
    std::string name;
    std::size_t connections = 0;  // WebSockets this thread serves
    double loop_lag_ms = 0;       // how long its last probe waited from post to run
};

// The WebSocket side as the app drives it: one ws_server on the app's thread (--threads 1), or
// io_threads (N listeners on threads of their own).
// Thread safety: the app's thread.
class client_io : public client_links {
  public:
    // Binds and starts accepting. Throws std::runtime_error when the address cannot be bound.
    virtual void listen() = 0;
    virtual void stop_listening() = 0;
    virtual listen_endpoint local_endpoint() const = 0;
    // Bytes queued for the connection and not yet written to its socket.
    virtual std::size_t buffered_bytes(connection_id who) const = 0;
    virtual std::size_t connection_count() const = 0;
    virtual connection_counters totals() const = 0;
    // Re-reads --tls-cert, --tls-key and --tls-ca: new handshakes use them, open connections
    // keep theirs. On a bad file the old ones stay; returns why (nullopt: reloaded).
    virtual std::optional<std::string> reload_tls() = 0;
    virtual std::vector<io_thread_stats> thread_stats() const { return {}; }
    // The broker connection became congested or clear (publish_relay.hpp, "Backpressure"). One
    // ws_server needs nothing more than the engine's pause_reading actions, which it gets while
    // the frame that caused them is handled; io_threads pauses publishers on their own threads
    // at once (see there).
    virtual void upstream_congestion(bool /*congested*/) {}
    // Hands what send(), close() and ping() queued since the last flush to the threads that
    // write it (io_threads, once the app's thread has run what is ready; a ws_server writes at
    // once). The app calls it after each event.
    virtual void flush() {}
};

class ws_server final : public client_io {
  public:
    struct handlers {
        std::function<void(connection_id, std::string remote_address, handshake_credentials)>
            on_open;
        std::function<void(connection_id, std::string_view text)> on_text;
        std::function<void(connection_id, std::string_view data)> on_binary;
        std::function<void(connection_id, const close_info&)> on_close;
        std::function<void(connection_id)> on_alive;  // a pong from the client
        // A ping from the client with that payload; true: answer it with a pong.
        std::function<bool(connection_id, std::string_view payload)> on_ping;
        // A plain HTTP request: answered with what on_http returns, or, when on_http_later is
        // set instead, with what it passes to `respond` later (on this server's thread).
        std::function<http_response(const http_request&)> on_http;
        std::function<void(const http_request&, std::function<void(http_response)> respond)>
            on_http_later;
    };

    // Throws std::runtime_error when the TLS files cannot be loaded. `ledger`: shared with the
    // other listeners of the bridge (null: one of its own).
    ws_server(asio::io_context& io, ws_server_options options, handlers h,
              std::shared_ptr<connection_ledger> ledger = nullptr);
    ~ws_server() override;
    ws_server(const ws_server&) = delete;
    ws_server& operator=(const ws_server&) = delete;

    void listen() override;
    void stop_listening() override;
    listen_endpoint local_endpoint() const override;

    void send(connection_id to, const frame_ptr& frame, bool binary,
              std::string_view head) override;
    std::size_t buffered_bytes(connection_id who) const override;
    void close(connection_id who, close_code code, std::string_view reason) override;
    void ping(connection_id who) override;
    void pong(connection_id who, std::string_view payload);
    void pause_reading_from(connection_id who) override;
    void resume_reading_from(connection_id who) override;
    // Resumes every connection paused (or to be) by pause_reading_from.
    void resume_reading_all();
    // io_threads: the same, for a connection whose frames are too far ahead of the app's thread;
    // a connection is read when neither pause holds.
    void pause_reading_for_app(connection_id who);
    void resume_reading_for_app(connection_id who);
    std::size_t connection_count() const override;
    std::optional<std::string> reload_tls() override;
    connection_counters totals() const override;

    class backend;  // one per transport (plain, TLS); see ws_server_impl.hpp

  private:
    std::unique_ptr<backend> impl_;
};

}  // namespace mqttws
