// Internal to ws_server: the websocketpp server, written once as a template over the transport
// config (plain TCP or TLS). Included only by ws_server.cpp and ws_server_tls.cpp, one
// instantiation each, so the two compile in parallel.
//
// Thread safety: as ws_server — the io_context's one thread only.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/server.hpp>

#include "core/admission.hpp"
#include "core/handshake.hpp"
#include "io/log.hpp"
#include "io/read_pauses.hpp"
#include "io/ws_server.hpp"
#include "io/ws_server_backend.hpp"
#include "io/ws_server_config.hpp"

namespace mqttws {

namespace ws_detail {

template <class Config>
class basic_backend final : public ws_server::backend {
  public:
    using server_type = websocketpp::server<Config>;
    using connection_ptr = typename server_type::connection_ptr;
    using message_type = typename Config::message_type;
    using hdl = websocketpp::connection_hdl;

    // `customize` is called with the server before it starts: the TLS backend installs its
    // context there. `peer_cn` reads a verified client certificate's CN (empty: none).
    // `reload_tls` re-reads the TLS files (see ws_server::reload_tls).
    template <class Customize, class PeerCn>
    basic_backend(asio::io_context& io, ws_server_options o, ws_server::handlers handlers,
                  std::shared_ptr<connection_ledger> ledger, Customize customize, PeerCn peer_cn,
                  std::function<std::optional<std::string>()> reload_tls)
        : options_(std::move(o)),
          on_(std::move(handlers)),
          peer_cn_(std::move(peer_cn)),
          reload_tls_(std::move(reload_tls)),
          ledger_(std::move(ledger)),
          accept_retry_(io),
          next_id_(options_.first_id) {
        // websocketpp computes the byte order on the first call, into an unguarded static: done
        // here, on the thread that makes every listener, before any I/O thread starts.
        websocketpp::lib::net::_htonll(0);
        server_.clear_access_channels(websocketpp::log::alevel::all);
        server_.clear_error_channels(websocketpp::log::elevel::all);
        server_.init_asio(&io);
        server_.set_reuse_addr(true);
        server_.set_listen_backlog(options_.listen_backlog);
        server_.set_max_message_size(options_.max_frame_bytes);
        server_.set_max_http_body_size(64 * 1024);
        server_.set_open_handshake_timeout(static_cast<long>(options_.handshake_timeout_ms));
        server_.set_user_agent(options_.server_header);  // a server's user agent is its Server
        customize(server_);

        server_.set_tcp_post_init_handler([this](hdl h) {
            const connection_ptr con = server_.get_con_from_hdl(h);
            std::error_code ec;
            con->get_raw_socket().set_option(asio::ip::tcp::no_delay(true), ec);
            handshake_request_may_take_the_rest(*con);
        });
        server_.set_validate_handler(
            [this](hdl h) { return validate(server_.get_con_from_hdl(h)); });
        server_.set_open_handler([this](hdl h) { opened(h); });
        server_.set_http_handler([this](hdl h) { http(h); });
        // A socket that never became a WebSocket (a failed or timed-out handshake). Open
        // connections get a handler of their own in opened().
        server_.set_fail_handler([this](hdl h) { release(server_.get_con_from_hdl(h).get()); });
    }

    ~basic_backend() override {
        if (spare_fd_ >= 0) ::close(spare_fd_);
    }

    void listen() override {
        std::error_code ec;
        const auto address = asio::ip::make_address(options_.bind_address, ec);
        if (ec) throw std::runtime_error("invalid --bind address '" + options_.bind_address + "'");
        const bool every_address = address == asio::ip::address_v6::any();
        const auto pre_bind = [this](bool dual_stack) {
            return [this, dual_stack](const auto& acceptor) {
                listen_fd_ = acceptor->native_handle();  // for shedding when out of descriptors
                std::error_code option_ec;
                // Dual-stack whatever net.ipv6.bindv6only says: IPv4 clients arrive as
                // ::ffff:a.b.c.d.
                if (dual_stack) acceptor->set_option(asio::ip::v6_only(false), option_ec);
                if (!option_ec && options_.reuse_port) {
                    const int on = 1;
                    if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &on,
                                     sizeof on) != 0)
                        option_ec = std::error_code(errno, std::system_category());
                }
                return option_ec;
            };
        };
        server_.set_tcp_pre_bind_handler(pre_bind(every_address));
        server_.listen(asio::ip::tcp::endpoint(address, options_.port), ec);
        if (ec && every_address) {  // no IPv6 on this host: every IPv4 address instead
            server_.set_tcp_pre_bind_handler(pre_bind(false));
            server_.listen(asio::ip::tcp::endpoint(asio::ip::address_v4::any(), options_.port), ec);
        }
        if (ec) {
            throw std::runtime_error("cannot listen on " + options_.bind_address + ":" +
                                     std::to_string(options_.port) + ": " + ec.message());
        }
        spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        accept_next();
    }

    void stop_listening() override {
        std::error_code ec;
        accept_retry_.cancel();
        if (server_.is_listening()) server_.stop_listening(ec);
    }

    listen_endpoint local_endpoint() const override {
        std::error_code ec;
        const auto local = const_cast<server_type&>(server_).get_local_endpoint(ec);
        return {local.address().to_string(), local.port()};
    }

    void send(connection_id to, const frame_ptr& frame, bool binary,
              std::string_view head) override {
        const auto it = connections_.find(to);
        if (it == connections_.end()) return;
        // An error (not open any more): nothing to do.
        it->second->send(prepared(head, frame, binary));
    }

    std::size_t buffered_bytes(connection_id who) const override {
        const auto it = connections_.find(who);
        return it == connections_.end() ? 0 : it->second->get_buffered_amount();
    }

    void close(connection_id id, close_code code, std::string_view reason) override {
        const auto it = connections_.find(id);
        if (it == connections_.end()) return;
        // The close handshake reads the peer's close.
        resume(id, read_pauses::for_engine | read_pauses::for_app);
        std::error_code ec;
        it->second->close(static_cast<websocketpp::close::status::value>(code), std::string(reason),
                          ec);
        if (!ec)
            closed_by_bridge_.emplace(
                id, close_info{static_cast<std::uint16_t>(code), std::string(reason), false});
    }

    void ping(connection_id id) override {
        const auto it = connections_.find(id);
        if (it == connections_.end()) return;
        std::error_code ec;
        it->second->ping(std::string(), ec);
    }

    void pong(connection_id id, std::string_view payload) override {
        const auto it = connections_.find(id);
        if (it == connections_.end()) return;
        std::error_code ec;
        it->second->pong(std::string(payload), ec);
    }

    // A pause applies at the connection's next message (read_pauses.hpp says why).
    void pause_reading_from(connection_id id) override { pause(id, read_pauses::for_engine); }
    void resume_reading_from(connection_id id) override { resume(id, read_pauses::for_engine); }
    void pause_reading_for_app(connection_id id) override { pause(id, read_pauses::for_app); }
    void resume_reading_for_app(connection_id id) override { resume(id, read_pauses::for_app); }

    void resume_reading_all() override {
        for (const connection_id id : pauses_.paused_for(read_pauses::for_engine))
            resume(id, read_pauses::for_engine);
    }

    std::size_t connection_count() const override { return connections_.size(); }

    std::optional<std::string> reload_tls() override { return reload_tls_(); }

    connection_counters totals() const override {
        connection_counters c = ledger_->totals();
        for (const auto& [id, con] : connections_)
            c.buffered_bytes += con->get_buffered_amount();
        return c;
    }

  private:
    // ---- accepting: our own loop, so that running out of descriptors does not spin ----

    void accept_next() {
        if (!server_.is_listening()) return;
        connection_ptr con = server_.get_connection();
        if (!con) {
            retry_accept_later();
            return;
        }
        std::error_code ec;
        server_.async_accept(
            con, [this, con](const std::error_code& accept_ec) { accepted(con, accept_ec); }, ec);
        if (ec) con->terminate(ec);
    }

    void accepted(const connection_ptr& con, const std::error_code& ec) {
        if (ec) {
            con->terminate(ec);
            if (ec == websocketpp::error::operation_canceled ||
                ec == asio::error::operation_aborted) {
                return;  // stopped listening
            }
            const auto failures =
                ledger_->with([](auto& l) { return ++l.counters.accept_failures; });
            // (asio reports errno values in a category of its own, not std::system_category.)
            if (ec.category() == asio::error::get_system_category() &&
                (ec.value() == EMFILE || ec.value() == ENFILE)) {
                shed_waiting_connections();
            }
            warn_at_most_every_10s(
                last_accept_warning_, "accepting connections failed; retrying",
                {{"error", ec.message()}, {"failures", std::to_string(failures)}});
            // Backing off: accept() would fail again at once, and the loop would spin.
            retry_accept_later();
            return;
        }
        admit(con);
        accept_next();
    }

    void retry_accept_later() {
        accept_retry_.expires_after(std::chrono::milliseconds(50));
        accept_retry_.async_wait([this](const std::error_code& ec) {
            if (!ec) accept_next();
        });
    }

    // Out of descriptors: the queued connections cannot be served; accept and close them with
    // a spare descriptor, so that their clients learn it at once instead of waiting (as nginx
    // and libuv do).
    void shed_waiting_connections() {
        if (spare_fd_ < 0 || listen_fd_ < 0) return;
        ::close(spare_fd_);
        for (int i = 0; i < 64; ++i) {
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) break;
            ::close(fd);
            ledger_->with([](auto& l) { ++l.counters.sockets_refused; });
        }
        spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    }

    // The admission limits for a new socket (core/admission.hpp). A trusted proxy's sockets are
    // limited per address by the clients it names, at their handshake.
    void admit(const connection_ptr& con) {
        std::error_code ec;
        const auto peer = con->get_raw_socket().remote_endpoint(ec);
        const std::string address = ec ? std::string("unknown") : plain_address(peer.address());
        const bool proxy = is_trusted_proxy(address);
        std::string group = proxy ? std::string() : address_group(address, ipv6_prefix());
        std::size_t pending = 0;  // on every listener
        const admission::verdict v = ledger_->with([&](auto& l) {
            const admission::verdict verdict = l.gate.accept(group);
            if (verdict != admission::verdict::admit) ++l.counters.sockets_refused;
            pending = l.gate.pending();
            return verdict;
        });
        if (v != admission::verdict::admit) {
            warn_at_most_every_10s(last_refusal_warning_, "connection refused",
                                   {{"remote", address}, {"why", std::string(to_string(v))}});
            std::error_code ignored;
            con->get_raw_socket().close(ignored);
            return;
        }
        slots_.emplace(
            con.get(),
            socket_slot{std::move(group), {}, true, con, false, handshake_deadline_for(con)});
        if (slots_.size() > 2 * (connections_.size() + pending) + 256) release_forgotten();
        con->start();
    }

    // --handshake-timeout counts from the accept: first for the TLS handshake (none on a plain
    // socket), then what is left for the HTTP request. Past the deadline the socket is closed
    // (not just cancelled: a read that completed meanwhile would start the next one), the TLS
    // handshake fails, and websocketpp ends the socket as a failed handshake (fail handler).
    std::unique_ptr<asio::steady_timer> handshake_deadline_for(const connection_ptr& con) {
        auto deadline = std::make_unique<asio::steady_timer>(
            accept_retry_.get_executor(), std::chrono::milliseconds(options_.handshake_timeout_ms));
        deadline->async_wait([socket = std::weak_ptr<typename server_type::connection_type>(con)](
                                 const std::error_code& ec) {
            if (ec) return;  // the TLS handshake is done, or the socket is gone
            if (const auto c = socket.lock()) {
                std::error_code ignored;
                c->get_raw_socket().close(ignored);
            }
        });
        return deadline;
    }

    // The TLS handshake is done (at once on a plain socket): the HTTP request gets the rest of
    // the socket's --handshake-timeout (websocketpp's open handshake timer).
    void handshake_request_may_take_the_rest(typename server_type::connection_type& con) {
        const auto it = slots_.find(&con);
        if (it == slots_.end() || !it->second.handshake_deadline) return;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            it->second.handshake_deadline->expiry() - asio::steady_timer::clock_type::now());
        it->second.handshake_deadline.reset();  // cancels its wait
        con.set_open_handshake_timeout(std::max<long>(1, static_cast<long>(left.count())));
    }

    // Gives back what a socket held (idempotent: the first event that ends it wins).
    void release(const void* con) {
        const auto it = slots_.find(con);
        if (it == slots_.end()) return;
        const socket_slot& slot = it->second;
        ledger_->with([&](auto& l) {
            l.gate.release(slot.group, slot.pending);
            if (!slot.client_group.empty()) l.gate.release_client(slot.client_group);
            if (slot.upgrading) --l.upgrading;
        });
        slots_.erase(it);
    }

    // Sockets websocketpp ended without telling (none known, but the slots must not leak).
    void release_forgotten() {
        std::vector<const void*> gone;
        for (const auto& [key, slot] : slots_) {
            if (slot.alive.expired()) gone.push_back(key);
        }
        for (const void* key : gone)
            release(key);
        ledger_->with([](auto& l) { l.gate.forget_idle(steady_now_ms()); });
    }

    bool is_trusted_proxy(const std::string& address) const {
        const auto& trusted = options_.trusted_proxies;
        return std::find(trusted.begin(), trusted.end(), address) != trusted.end();
    }
    unsigned ipv6_prefix() const { return options_.admission.ipv6_prefix; }
    // ---- the upgrade ----

    bool validate(const connection_ptr& con) {
        const bool ok = acceptable(con);
        if (!ok) ledger_->with([](auto& l) { ++l.counters.refused; });
        return ok;
    }

    bool acceptable(const connection_ptr& con) {
        // Only RFC 6455 clients: the shared pre-framed buffers are RFC 6455 frames.
        if (con->get_request_header("Sec-WebSocket-Version") != "13") return false;
        if (!options_.allowed_origins.empty()) {
            const std::string origin = con->get_request_header("Origin");
            const auto& allowed = options_.allowed_origins;
            if (!origin.empty() &&
                std::find(allowed.begin(), allowed.end(), origin) == allowed.end()) {
                con->set_status(websocketpp::http::status_code::forbidden);
                return false;
            }
        }
        // Per address: behind a trusted proxy, the client it names is counted now.
        const auto slot = slots_.find(con.get());
        const std::string client = address_without_port(remote_address(*con));
        const bool named_by_proxy = slot != slots_.end() && slot->second.group.empty() &&
                                    is_trusted_proxy(plain_address_of(*con)) &&
                                    client != plain_address_of(*con);
        const std::string group = address_group(client, ipv6_prefix());
        bool full = false;
        const admission::verdict v = ledger_->with([&](auto& l) {
            // Upgrades accepted but not open yet count too: handshakes validated at the same
            // time (on any thread) would otherwise all see room for themselves.
            full =
                options_.max_connections != 0 && l.open + l.upgrading >= options_.max_connections;
            if (full) return admission::verdict::admit;
            const admission::verdict verdict =
                l.gate.handshake(group, named_by_proxy, steady_now_ms());
            if (verdict == admission::verdict::admit && slot != slots_.end()) ++l.upgrading;
            return verdict;
        });
        if (full) {
            con->set_status(websocketpp::http::status_code::service_unavailable);
            return false;
        }
        if (v != admission::verdict::admit) {
            con->set_status(websocketpp::http::status_code::too_many_requests);
            warn_at_most_every_10s(last_refusal_warning_, "upgrade refused",
                                   {{"remote", client}, {"why", std::string(to_string(v))}});
            return false;
        }
        if (slot != slots_.end()) {
            if (named_by_proxy) slot->second.client_group = group;
            slot->second.upgrading = true;
        }
        return true;
    }

    std::string plain_address_of(typename server_type::connection_type& con) {
        std::error_code ec;
        const auto endpoint = con.get_raw_socket().remote_endpoint(ec);
        return ec ? std::string("unknown") : plain_address(endpoint.address());
    }

    void opened(const hdl& h) {
        connection_ptr con = server_.get_con_from_hdl(h);
        const auto slot = slots_.find(con.get());
        const bool was_pending = slot != slots_.end() && slot->second.pending;
        const bool was_upgrading = was_pending && slot->second.upgrading;
        if (was_pending) {
            slot->second.pending = false;
            slot->second.upgrading = false;
        }
        ledger_->with([&](auto& l) {
            if (was_pending) l.gate.opened();
            if (was_upgrading) --l.upgrading;
            ++l.open;
            ++l.counters.accepted;
        });
        const connection_id id = next_id_;
        next_id_ += options_.id_stride;
        connections_.emplace(id, con);
        con->set_message_handler([this, id](hdl from, typename server_type::message_ptr msg) {
            if (msg->get_opcode() == websocketpp::frame::opcode::text) {
                on_.on_text(id, msg->get_payload());
            } else {
                on_.on_binary(id, msg->get_payload());
            }
            apply_pause(id, from);
        });
        con->set_close_handler([this, id](hdl c) { closed(id, c); });
        con->set_pong_handler([this, id](hdl, std::string) { on_.on_alive(id); });
        // websocketpp answers with a pong when the handler says so.
        con->set_ping_handler(
            [this, id](hdl, std::string payload) { return on_.on_ping(id, payload); });
        con->set_fail_handler([this, id](hdl c) { closed(id, c); });
        handshake_credentials credentials =
            request_credentials(con->get_request_header("Authorization"), con->get_resource());
        credentials.certificate_cn = peer_cn_(*con);
        on_.on_open(id, remote_address(*con), std::move(credentials));
    }

    // The peer as "1.2.3.4:5678" or "[2001:db8::1]:5678" — an IPv4 client of the dual-stack
    // listener is shown as IPv4, not ::ffff:1.2.3.4 — or, behind a trusted proxy, the client the
    // proxy speaks for: the last address in X-Forwarded-For (the one the proxy itself added).
    std::string remote_address(typename server_type::connection_type& con) {
        std::error_code ec;
        const auto endpoint = con.get_raw_socket().remote_endpoint(ec);
        if (ec) return "unknown";
        const std::string peer = plain_address(endpoint.address());
        if (is_trusted_proxy(peer)) {
            std::string client = forwarded_client(con.get_request_header("X-Forwarded-For"));
            if (!client.empty()) return client;
        }
        const std::string port = std::to_string(endpoint.port());
        return peer.find(':') != std::string::npos ? "[" + peer + "]:" + port : peer + ":" + port;
    }

    void pause(connection_id id, read_pauses::reason why) {
        if (connections_.count(id) != 0) pauses_.ask(id, why);
    }

    void resume(connection_id id, std::uint8_t why) {
        if (!pauses_.lift(id, why)) return;
        const auto con = connections_.find(id);
        if (con != connections_.end()) con->second->resume_reading();
    }

    // Inside the connection's message handler, before websocketpp starts its next read.
    void apply_pause(connection_id id, const hdl& h) {
        if (pauses_.apply_now(id)) server_.get_con_from_hdl(h)->handle_pause_reading();
    }

    void closed(connection_id id, const hdl& h) {
        pauses_.forget(id);
        if (connections_.erase(id) == 0) return;
        ledger_->with([](auto& l) { --l.open; });
        connection_ptr con = server_.get_con_from_hdl(h);
        release(con.get());
        close_info info;
        const auto ours = closed_by_bridge_.find(id);
        const auto local = con->get_local_close_code();
        if (ours != closed_by_bridge_.end()) {
            // What the bridge sent — also when the peer never answered and websocketpp records
            // the end as 1006 (a half-open client closed for its heartbeat is still a 4001).
            info = ours->second;
            closed_by_bridge_.erase(ours);
        } else if (local == websocketpp::close::status::protocol_error ||
                   local == websocketpp::close::status::invalid_payload ||
                   local == websocketpp::close::status::message_too_big) {
            // websocketpp's own closes for protocol violations (too big, not UTF-8, bad framing).
            info =
                close_info{static_cast<std::uint16_t>(local), con->get_local_close_reason(), false};
        } else {
            info = close_info{static_cast<std::uint16_t>(con->get_remote_close_code()),
                              con->get_remote_close_reason(), true};
            if (info.code == websocketpp::close::status::blank)
                info.code = websocketpp::close::status::abnormal_close;
        }
        on_.on_close(id, info);
    }

    void http(const hdl& h) {
        connection_ptr con = server_.get_con_from_hdl(h);
        release(con.get());  // the socket ends with this answer
        http_request request{con->get_resource(), con->get_request_header("If-None-Match"),
                             con->get_request_header("Accept-Encoding")};
        if (!on_.on_http_later) {
            answer(*con, on_.on_http(request));
            return;
        }
        if (con->defer_http_response()) return;  // cannot defer: websocketpp answers 500
        on_.on_http_later(request, [con](http_response r) {
            answer(*con, r);
            con->send_http_response();
        });
    }

    static void answer(typename server_type::connection_type& con, const http_response& r) {
        con.set_status(static_cast<websocketpp::http::status_code::value>(r.status));
        con.replace_header("Content-Type", r.content_type);
        con.replace_header("Cache-Control", r.cache_control);
        for (const auto& [name, value] : r.headers)
            con.replace_header(name, value);
        con.set_body(r.body);
    }

    // The message that writes head + frame: the frame header and `head` are its own, the
    // payload is `frame`, borrowed (shared_payload_message). A message without a head is reused
    // for consecutive sends of the same frame (a broadcast); the cache holds the frame_ptr so
    // that its address cannot be reused meanwhile.
    typename server_type::message_ptr prepared(std::string_view head, const frame_ptr& frame,
                                               bool binary) {
        const bool cacheable = head.empty();
        if (cacheable && frame == cached_frame_ && binary == cached_binary_) return cached_message_;
        auto msg = std::make_shared<message_type>(
            typename message_type::con_msg_man_ptr(),
            binary ? websocketpp::frame::opcode::binary : websocketpp::frame::opcode::text, 0);
        std::string header = frame_header(head.size() + frame->size(), binary);
        header += head;
        msg->set_header(std::move(header));
        msg->borrow_payload(frame);
        msg->set_prepared(true);
        if (cacheable) {
            cached_frame_ = frame;
            cached_binary_ = binary;
            cached_message_ = msg;
        }
        return msg;
    }

    // What one accepted socket holds of the admission limits, until it ends.
    struct socket_slot {
        std::string group;         // its address group (empty: a trusted proxy)
        std::string client_group;  // behind a proxy, the group of the client it names
        bool pending = true;       // not a WebSocket (yet)
        std::weak_ptr<void> alive;
        bool upgrading = false;  // its upgrade was accepted, the connection is not open yet
        // Until its TLS handshake is done: ends it at --handshake-timeout from the accept.
        std::unique_ptr<asio::steady_timer> handshake_deadline;
    };

    ws_server_options options_;
    ws_server::handlers on_;
    std::function<std::string(typename server_type::connection_type&)> peer_cn_;
    std::function<std::optional<std::string>()> reload_tls_;
    std::shared_ptr<connection_ledger> ledger_;           // shared by the bridge's listeners
    std::unordered_map<const void*, socket_slot> slots_;  // by websocketpp connection
    asio::steady_timer accept_retry_;
    int listen_fd_ = -1;
    int spare_fd_ = -1;
    std::chrono::steady_clock::time_point last_accept_warning_{};
    std::chrono::steady_clock::time_point last_refusal_warning_{};
    server_type server_;
    std::unordered_map<connection_id, connection_ptr> connections_;
    std::unordered_map<connection_id, close_info> closed_by_bridge_;  // closes we started
    // Connections whose reading is paused, or is to be at their next message.
    read_pauses pauses_;
    connection_id next_id_;
    frame_ptr cached_frame_;
    bool cached_binary_ = false;
    typename server_type::message_ptr cached_message_;
};

}  // namespace ws_detail
}  // namespace mqttws
