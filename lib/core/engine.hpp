// The bridge's state machine: events in, actions out. No sockets, threads or timers.
//
// Events are what happened at the edges — a connection opened, sent a frame, went away; the
// broker connection came up, went down, delivered a message, confirmed an operation; time
// passed (`tick`). Each event handler appends the resulting actions to an `action_list` — frames
// to send, connections to close, SUBSCRIBE/UNSUBSCRIBE/PUBLISH to do upstream — which the app
// then carries out. So every rule of the protocol is unit-tested as "frames in → actions out".
//
// The engine is a dispatcher: it decodes what arrives (or takes it decoded by the I/O thread that
// read it) and hands it to the component that owns the concern, each in a file of its own with its
// own opening comment:
//   auth_gate               who a client is, session tokens, tokens expiring, signed frames
//   upstream_subscriptions  the filters held at the broker, SUBACKs, retained messages
//   router                  broker messages to the clients they are for
//   publish_relay           client publishes to the broker, acks, the offline queue
//   delivery_pacer          every frame to a client, flow control, heartbeat pings
//   presence_keeper         device presence, last wills, the bridge's own status
//   command_desk            commands and their lifecycle, idempotency
//   session_directory       the sessions, by key and by connection
// It keeps for itself what spans them: a session's life (opened, authenticated, resumed,
// detached, ended) and the tick that times them out.
//
// Sessions: each connection gets a session; a session outlives its connection when the
// connection drops without a clean close, for `resume_window_ms`, keeping its subscriptions and
// recording what they match. A client that authenticates with the session's token takes it over
// and is sent everything after the `lastSeq` it names (outbox).
//
// Thread safety: none. One engine per bridge, driven from one thread (the app's io_context).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/actions.hpp"
#include "core/auth_gate.hpp"
#include "core/broker_message.hpp"
#include "core/commands.hpp"
#include "core/delivery_pacer.hpp"
#include "core/engine_config.hpp"
#include "core/engine_context.hpp"
#include "core/engine_stats.hpp"
#include "core/platform.hpp"
#include "core/presence.hpp"
#include "core/publish_relay.hpp"
#include "core/requests.hpp"
#include "core/router.hpp"
#include "core/session_directory.hpp"
#include "core/upstream_subscriptions.hpp"

namespace mqttws {

// What holds for the bridge as a whole, which engine shards share (engine_shards.hpp): the
// limits on failed authentications and on the sessions waiting for a resume, and the commands
// remembered by idempotency key. A null member: the engine keeps its own.
struct bridge_state {
    std::shared_ptr<auth_limiter> auth_failures;
    std::shared_ptr<detached_sessions> detached;
    std::shared_ptr<idempotency_store> commands;
};
inline std::shared_ptr<auth_limiter> make_auth_limiter(const engine_config& config) {
    return std::make_shared<auth_limiter>(
        auth_limits{config.auth.failures_per_minute, config.auth.failures_per_user_per_minute});
}
inline std::shared_ptr<detached_sessions> make_detached_sessions(const engine_config& config) {
    return std::make_shared<detached_sessions>(config.max_detached_sessions);
}
inline std::shared_ptr<idempotency_store> make_idempotency_store(const engine_config& config) {
    return std::make_shared<idempotency_store>(config.devices.idempotency_keys,
                                               config.devices.idempotency_window_ms);
}
// What `config` sets, for engine shards to share.
inline bridge_state make_bridge_state(const engine_config& config) {
    return {make_auth_limiter(config), make_detached_sessions(config),
            make_idempotency_store(config)};
}

class engine {
  public:
    // `shared`: what engine shards share; by default the engine keeps its own.
    engine(engine_config config, platform& env,
           std::shared_ptr<const security_policy> policy = std::make_shared<security_policy>(),
           bridge_state shared = {});
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    // ---- connection events ----
    // `handshake`: credentials from the WebSocket upgrade (bearer token, client certificate).
    void client_opened(connection_id id, std::string remote_address,
                       handshake_credentials handshake, action_list& out);
    void client_text(connection_id id, std::string_view frame, action_list& out);
    // A binary frame: a publish with a raw payload (docs/protocol.md, "Binary frames").
    void client_binary(connection_id id, std::string_view frame, action_list& out);
    // A text or binary frame another thread decoded (frame_decoder::decode_for_engine,
    // decode_binary_for_engine): the same as client_text or client_binary, without the decoding
    // on this thread.
    void client_decoded(connection_id id, decoded_frame frame, action_list& out);
    // The connection ended with close `code` (1006: no close frame), sent by the client
    // (`by_peer`) or by the bridge. A client ends its session by closing with 1000 or no code;
    // the bridge's own closes end it too, except those a client recovers from by reconnecting
    // (4001 heartbeat on a half-open connection, 4008 slow consumer, 4401 token expired). After
    // any other close the session waits `resume_window_ms` for a resume.
    void client_closed(connection_id id, std::uint16_t code, bool by_peer, action_list& out);
    // Proof of life that is not a frame: a pong from the client.
    void client_alive(connection_id id);
    // A WebSocket ping from the client with `payload_bytes` of payload: proof of life, and a pong
    // of that size to queue, which counts against its budget like any frame. Returns whether to
    // answer it (not when the client is being closed, e.g. for not reading its pongs).
    bool client_pinged(connection_id id, std::size_t payload_bytes, action_list& out);

    // ---- flow control (delivery_pacer.hpp) ----
    std::size_t congested_count() const { return pacer_.congested_count(); }
    void poll_congested(action_list& out);

    // ---- upstream events ----
    void upstream_connected(bool session_present, action_list& out);
    void upstream_lost(std::string_view reason, action_list& out);
    void upstream_message(const broker_message& message, action_list& out);
    // With engine shards (broker_hub.hpp): a broker message the hub hands this shard, shared
    // with the other shards, with this shard's `subscription_ids` for it; or (`local`, no ids)
    // one that another shard's client published through this bridge (local fan-out).
    void shard_message(const broker_message& message,
                       const std::vector<std::uint32_t>& subscription_ids, bool local,
                       action_list& out);
    // With engine shards: another shard's device came online or went offline there
    // (device_presence, handed on by the hub), so that commands know it at once.
    void peer_presence(const std::string& device, bool online, action_list& out);
    // With engine shards: what another shard asks of this one (peer_shard_of in actions.hpp:
    // end_detached_session, adopt_command, tell_command_owner).
    void from_peer_shard(const action& request, action_list& out);
    // `granted` is the SUBACK return code: 0..2, or >= 0x80 (or < 0) when refused/failed.
    void upstream_subscribed(op_id op, int granted, action_list& out);
    // qos >= 1 publish confirmed (PUBACK / PUBCOMP: no error) or failed.
    void upstream_published(op_id op, std::optional<errc> error, std::string_view message,
                            action_list& out);
    // The publishes waiting for the broker connection became too many (`congested`), or few
    // enough again: clients that publish meanwhile are not read until it clears (publish_relay).
    void upstream_congestion(bool congested, action_list& out);

    // ---- time and lifecycle ----
    void tick(action_list& out);
    // Closes every connection with 1001 (the bridge is going away).
    void shutdown(action_list& out);
    // A new security policy (reload): existing connections stay, unless what they
    // authenticated with is revoked (4403); subscriptions the new ACL does not allow are removed
    // and their clients told with an `error` frame.
    void set_security(std::shared_ptr<const security_policy> policy, action_list& out);

    // --state-dir: the lines a previous run wrote to `file` (state_record), read back at start.
    void restore_state(std::string_view file, const std::vector<std::string>& lines,
                       action_list& out);

    engine_stats stats() const;
    // The bridge's own filters (presence, answers to its commands) that no client of this
    // engine holds: with engine shards, the filters held upstream for clients are the hub's
    // less those that are own-only on every shard.
    std::vector<std::string> own_only_filters() const { return subscriptions_.own_only_filters(); }
    // Authenticated sessions, those with the most conflated + dropped messages first.
    std::vector<session_summary> sessions(std::size_t limit) const;
    const engine_config& config() const { return ctx_.config; }

  private:
    // Every public event handler starts here (send_budget::measure needs to tell events apart).
    void begin_event() { pacer_.begin_event(); }
    // ... and those that may publish end here: what they published through this bridge goes to
    // its own subscribers (engine_context::loopback).
    void end_event(action_list& out);
    // A decoded frame of `s` (`frame`: its text, needed only for a signature check).
    void read_request(session& s, std::variant<client_request, decode_failure> decoded,
                      std::string_view frame, bool binary, action_list& out);

    void handle(session& s, auth_request& r, action_list& out);
    void handle(session& s, subscribe_request& r, action_list& out);
    void handle(session& s, unsubscribe_request& r, action_list& out);
    void handle(session& s, publish_request& r, action_list& out);
    void handle(session& s, ack_request& r, action_list& out);
    void handle(session& s, ping_request& r, action_list& out);
    void handle(session& s, device_report_request& r, action_list& out);
    void handle(session& s, batch_request& r, action_list& out);
    void handle(session& s, refresh_request& r, action_list& out);
    void handle(session& s, command_request& r, action_list& out);
    void handle(session& s, command_result_request& r, action_list& out);
    // The `will` of an auth frame, for the authenticated `s`: valid and allowed by its ACL (then
    // kept), or refused with an error frame and a 4403 close (false).
    bool accept_will(session& s, const auth_request& r, action_list& out);
    // For a device with a key: the frame is signed (or need not be), its signature verifies,
    // and it is not a replay; otherwise it is refused and false returned. A `binary` frame has
    // no room for a signature: it is refused from a device that must sign.
    bool signature_accepted(session& s, std::string_view frame, bool binary,
                            const client_request& request, action_list& out);

    // `fresh` (just opened) authenticated as `who` with the token of `old`: `old` takes over
    // fresh's connection and sends what the client missed.
    void resume(session& fresh, session& old, const auth_request& r, identity who,
                action_list& out);
    void end_session(session& s, presence_keeper::end_reason why, action_list& out);
    // Past --max-detached-sessions: ends the detached session `e` of this engine, if it still
    // waits.
    void end_detached(const detached_sessions::entry& e, action_list& out);
    // A message for the bridge's own subscriptions (presence, answers to its commands).
    void own_message(const broker_message& m, action_list& out);

    engine_context ctx_;
    frame_decoder decoder_;
    session_directory sessions_;
    delivery_pacer pacer_;
    auth_gate gate_;
    upstream_subscriptions subscriptions_;
    publish_relay relay_;
    presence_keeper presence_;
    command_desk commands_;
    router router_;
    bool connected_before_ = false;  // the broker connection has been up before
};

}  // namespace mqttws
