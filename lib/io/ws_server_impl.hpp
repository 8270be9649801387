// Internal to ws_server: the websocketpp server, written once as a template over the transport
// config (plain TCP or TLS). Included only by ws_server.cpp and ws_server_tls.cpp, one
// instantiation each, so the two compile in parallel.
//
// Thread safety: as ws_server — the io_context's one thread only.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/server.hpp>

#include "core/handshake.hpp"
#include "io/ws_server.hpp"

namespace mqttws {

class ws_server::backend {
  public:
    virtual ~backend() = default;
    virtual void listen() = 0;
    virtual void stop_listening() = 0;
    virtual ws_server::endpoint local_endpoint() const = 0;
    virtual void send(connection_id to, const frame_ptr& frame, bool binary) = 0;
    virtual std::size_t buffered_bytes(connection_id who) const = 0;
    virtual void close(connection_id who, close_code code, std::string_view reason) = 0;
    virtual void ping(connection_id who) = 0;
    virtual std::size_t connection_count() const = 0;
    virtual ws_server::counters totals() const = 0;
};

std::unique_ptr<ws_server::backend> make_plain_backend(asio::io_context& io,
                                                       ws_server_options options,
                                                       ws_server::handlers h);
std::unique_ptr<ws_server::backend> make_tls_backend(asio::io_context& io,
                                                     ws_server_options options,
                                                     ws_server::handlers h);

namespace ws_detail {

// websocketpp configuration on top of a transport config (`asio` or `asio_tls`): one thread
// owns every connection (no locks, no strands), and a small per-connection read buffer (the
// default 16 KiB is most of an idle connection's memory; frames larger than it take more reads).
template <class Base>
struct config : Base {
    using type = config;
    using base = Base;

    typedef websocketpp::concurrency::none concurrency_type;
    typedef websocketpp::log::basic<concurrency_type, websocketpp::log::elevel> elog_type;
    typedef websocketpp::log::basic<concurrency_type, websocketpp::log::alevel> alog_type;

    struct transport_config : public base::transport_config {
        typedef typename type::concurrency_type concurrency_type;
        typedef typename type::alog_type alog_type;
        typedef typename type::elog_type elog_type;
        typedef typename type::request_type request_type;
        typedef typename type::response_type response_type;
        typedef typename base::transport_config::socket_type socket_type;
        // No per-connection asio strands: one thread runs every handler.
        static const bool enable_multithreading = false;
    };
    typedef websocketpp::transport::asio::endpoint<transport_config> transport_type;

    static const std::size_t connection_read_buffer_size = 512;
};

// RFC 6455 §5.2 header of an unmasked, final text (or binary) frame of `size` bytes. Server
// frames are not masked, so one framed buffer is valid on every connection.
std::string frame_header(std::size_t size, bool binary);

template <class Config>
class basic_backend final : public ws_server::backend {
  public:
    using server_type = websocketpp::server<Config>;
    using connection_ptr = typename server_type::connection_ptr;
    using message_type = typename Config::message_type;
    using hdl = websocketpp::connection_hdl;

    // `customize` is called with the server before it starts: the TLS backend installs its
    // context there. `peer_cn` reads a verified client certificate's CN (empty: none).
    template <class Customize, class PeerCn>
    basic_backend(asio::io_context& io, ws_server_options o, ws_server::handlers handlers,
                  Customize customize, PeerCn peer_cn)
        : options_(std::move(o)), on_(std::move(handlers)), peer_cn_(std::move(peer_cn)) {
        server_.clear_access_channels(websocketpp::log::alevel::all);
        server_.clear_error_channels(websocketpp::log::elevel::all);
        server_.init_asio(&io);
        server_.set_reuse_addr(true);
        server_.set_listen_backlog(options_.listen_backlog);
        server_.set_max_message_size(options_.max_frame_bytes);
        server_.set_max_http_body_size(64 * 1024);
        customize(server_);

        server_.set_tcp_post_init_handler([this](hdl h) {
            std::error_code ec;
            server_.get_con_from_hdl(h)->get_raw_socket().set_option(asio::ip::tcp::no_delay(true),
                                                                     ec);
        });
        server_.set_validate_handler(
            [this](hdl h) { return validate(server_.get_con_from_hdl(h)); });
        server_.set_open_handler([this](hdl h) { opened(h); });
        server_.set_http_handler([this](hdl h) { http(h); });
    }

    void listen() override {
        std::error_code ec;
        const auto address = asio::ip::make_address(options_.bind_address, ec);
        if (ec) throw std::runtime_error("invalid --bind address '" + options_.bind_address + "'");
        const bool every_address = address == asio::ip::address_v6::any();
        if (every_address) {
            // Dual-stack whatever net.ipv6.bindv6only says: IPv4 clients arrive as ::ffff:a.b.c.d.
            server_.set_tcp_pre_bind_handler([](const auto& acceptor) {
                std::error_code option_ec;
                acceptor->set_option(asio::ip::v6_only(false), option_ec);
                return option_ec;
            });
        }
        server_.listen(asio::ip::tcp::endpoint(address, options_.port), ec);
        if (ec && every_address) {  // no IPv6 on this host: every IPv4 address instead
            server_.set_tcp_pre_bind_handler(nullptr);
            server_.listen(asio::ip::tcp::endpoint(asio::ip::address_v4::any(), options_.port), ec);
        }
        if (ec) {
            throw std::runtime_error("cannot listen on " + options_.bind_address + ":" +
                                     std::to_string(options_.port) + ": " + ec.message());
        }
        server_.start_accept(ec);
        if (ec) throw std::runtime_error("cannot accept connections: " + ec.message());
    }

    void stop_listening() override {
        std::error_code ec;
        if (server_.is_listening()) server_.stop_listening(ec);
    }

    ws_server::endpoint local_endpoint() const override {
        std::error_code ec;
        const auto local = const_cast<server_type&>(server_).get_local_endpoint(ec);
        return {local.address().to_string(), local.port()};
    }

    void send(connection_id to, const frame_ptr& frame, bool binary) override {
        const auto it = connections_.find(to);
        if (it == connections_.end()) return;
        it->second->send(prepared(frame, binary));  // error (not open any more): nothing to do
    }

    std::size_t buffered_bytes(connection_id who) const override {
        const auto it = connections_.find(who);
        return it == connections_.end() ? 0 : it->second->get_buffered_amount();
    }

    void close(connection_id id, close_code code, std::string_view reason) override {
        const auto it = connections_.find(id);
        if (it == connections_.end()) return;
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

    std::size_t connection_count() const override { return connections_.size(); }

    ws_server::counters totals() const override {
        ws_server::counters c = counters_;
        for (const auto& [id, con] : connections_)
            c.buffered_bytes += con->get_buffered_amount();
        return c;
    }

  private:
    bool validate(const connection_ptr& con) {
        const bool ok = acceptable(con);
        if (!ok) ++counters_.refused;
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
        if (options_.max_connections != 0 && connections_.size() >= options_.max_connections) {
            con->set_status(websocketpp::http::status_code::service_unavailable);
            return false;
        }
        return true;
    }

    void opened(const hdl& h) {
        connection_ptr con = server_.get_con_from_hdl(h);
        const connection_id id = next_id_++;
        connections_.emplace(id, con);
        ++counters_.accepted;
        con->set_message_handler([this, id](hdl, typename server_type::message_ptr msg) {
            if (msg->get_opcode() == websocketpp::frame::opcode::text) {
                on_.on_text(id, msg->get_payload());
            } else {
                on_.on_binary(id, msg->get_payload());
            }
        });
        con->set_close_handler([this, id](hdl c) { closed(id, c); });
        con->set_pong_handler([this, id](hdl, std::string) { on_.on_alive(id); });
        // websocketpp answers with a pong when the handler says so.
        con->set_ping_handler(
            [this, id](hdl, std::string payload) { return on_.on_ping(id, payload.size()); });
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
        auto address = endpoint.address();
        if (address.is_v6() && address.to_v6().is_v4_mapped())
            address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
        const std::string peer = address.to_string();
        const auto& trusted = options_.trusted_proxies;
        if (std::find(trusted.begin(), trusted.end(), peer) != trusted.end()) {
            std::string client = forwarded_client(con.get_request_header("X-Forwarded-For"));
            if (!client.empty()) return client;
        }
        const std::string port = std::to_string(endpoint.port());
        return address.is_v6() ? "[" + peer + "]:" + port : peer + ":" + port;
    }

    void closed(connection_id id, const hdl& h) {
        if (connections_.erase(id) == 0) return;
        connection_ptr con = server_.get_con_from_hdl(h);
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
        const http_response r = on_.on_http(con->get_resource());
        con->set_status(static_cast<websocketpp::http::status_code::value>(r.status));
        con->replace_header("Content-Type", r.content_type);
        con->replace_header("Cache-Control", "no-store");
        con->set_body(r.body);
    }

    // One websocketpp message per distinct frame; consecutive sends of the same frame (a
    // broadcast) reuse it. The cache holds the frame_ptr so its address cannot be reused.
    typename server_type::message_ptr prepared(const frame_ptr& frame, bool binary) {
        if (frame == cached_frame_ && binary == cached_binary_) return cached_message_;
        auto msg = std::make_shared<message_type>(
            typename message_type::con_msg_man_ptr(),
            binary ? websocketpp::frame::opcode::binary : websocketpp::frame::opcode::text, 0);
        msg->set_header(frame_header(frame->size(), binary));
        msg->set_payload(*frame);
        msg->set_prepared(true);
        cached_frame_ = frame;
        cached_binary_ = binary;
        cached_message_ = msg;
        return msg;
    }

    ws_server_options options_;
    ws_server::handlers on_;
    std::function<std::string(typename server_type::connection_type&)> peer_cn_;
    server_type server_;
    std::unordered_map<connection_id, connection_ptr> connections_;
    std::unordered_map<connection_id, close_info> closed_by_bridge_;  // closes we started
    connection_id next_id_ = 1;
    ws_server::counters counters_;
    frame_ptr cached_frame_;
    bool cached_binary_ = false;
    typename server_type::message_ptr cached_message_;
};

}  // namespace ws_detail
}  // namespace mqttws
