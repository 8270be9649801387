// Who is there: device presence, each client's last will, and the bridge's own status
// (docs/protocol.md, "Devices and commands").
//
// - Presence: a client that authenticates as a device (`deviceId`) makes the bridge publish a
//   retained {"online":true,"since":…,"bridge":…} to its presence topic; when its session ends
//   — a clean close, or a drop nobody resumed within the resume window — a retained
//   {"online":false,"reason":"closed"|"timeout"|"revoked"|"bridge-stopped",…}. Two sessions of
//   one device count once.
// - The bridge's status: a retained {"online":true,…} when it connects to the broker, and its
//   MQTT will (set by the app on the broker connection) says {"online":false,
//   "reason":"bridge-lost"} if it dies. A device's presence names its bridge, so a consumer can
//   tell a stale "online" after a crash; with --state-dir the next run also marks the devices
//   its predecessor left online as offline ("bridge-lost").
// - Last will: a client may give one in `auth`. It is published when the session ends other
//   than by the client's clean close (1000), or `delayMs` after a drop if the client has not
//   resumed by then — MQTT's Last Will with Will Delay, per WebSocket client.
// - What it hears of presence on the broker (its own and other bridges') is kept, bounded, so
//   that commands can refuse a device that is offline (command_desk). With engine shards, what
//   the other shards of this bridge say of their devices (peer_presence) counts as this engine's
//   own devices do: at once, ahead of the broker.
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/broker_message.hpp"
#include "core/engine_context.hpp"
#include "core/publish_relay.hpp"
#include "core/session.hpp"

namespace mqttws {

// `tmpl` with `{id}` replaced by `id` and `{bridge}` by `bridge`.
std::string fill_topic(std::string_view tmpl, std::string_view id, std::string_view bridge);

class presence_keeper {
  public:
    // How a session ended, for the presence it leaves and whether its will goes out.
    enum class end_reason { closed, timeout, revoked, bridge_stopped };

    presence_keeper(engine_context& ctx, publish_relay& relay);

    // ---- the broker ----
    // The filter the bridge subscribes to itself to hear every device's presence (empty: no
    // presence).
    const std::string& presence_filter() const { return presence_filter_; }
    // The broker connection is up: the bridge's status, and the devices a previous run left
    // online marked offline.
    void upstream_connected(action_list& out);
    // A message of the bridge's own subscriptions: a presence (this bridge's or another's) is
    // remembered for offline checks. Returns the device that is online now (else empty).
    std::string heard(const broker_message& m);
    // What the bridge knows of `device`: true online, false offline, nullopt unknown.
    std::optional<bool> online(const std::string& device) const;
    // Engine shards: `device`'s sessions on another shard of this bridge began (`online`) or all
    // ended (device_presence, through the broker_hub).
    void peer_presence(const std::string& device, bool online);

    // ---- sessions ----
    void authenticated(session& s, action_list& out);
    // The connection of `s` ended; unless the client closed it cleanly, its will is scheduled
    // (`delayMs` from now) while the session waits for a resume.
    void connection_ended(session& s, bool clean, std::int64_t now);
    // A new connection took `s` over: its scheduled will is cancelled.
    void resumed(session& s) { s.device().will_due_ms = 0; }
    // `s` ends: its will goes out (unless `why` is a clean close), its device goes offline.
    void session_ended(session& s, end_reason why, action_list& out);
    // A detached session whose will is due.
    void tick(session& s, std::int64_t now, action_list& out);
    // The bridge stops: its devices go offline, its status says so.
    void shutdown(const std::vector<session*>& sessions, action_list& out);

    // --state-dir: what the previous run wrote (presence.jsonl).
    void restore(const std::vector<std::string>& lines, action_list& out);

  private:
    void publish_presence(const std::string& device, bool online, std::string_view reason,
                          action_list& out);
    void publish_will(session& s, action_list& out);
    // The bridge's retained status.
    void publish_bridge_status(bool online, std::int64_t since, std::string_view reason,
                               action_list& out);
    // Both: {"online":…,"since":…,"reason":…,"bridge":…}, retained, QoS 1, to `topic`.
    void publish_status(std::string topic, bool online, std::int64_t since, std::string_view reason,
                        action_list& out);
    std::string presence_of(std::string_view topic) const;  // device id in a presence topic
    // What is known of `device` now; a device not known yet is remembered only while fewer
    // than devices.known_devices are, so that a stream of new device ids cannot grow it.
    void remember(const std::string& device, bool online);

    engine_context& ctx_;
    publish_relay& relay_;
    std::string presence_filter_;                  // the template with `+` for the id
    std::size_t id_level_ = 0;                     // the level of the template that holds the id
    std::unordered_map<std::string, int> local_;   // devices with sessions here, and how many
    std::unordered_set<std::string> peers_;        // ... on another shard of this bridge
    std::unordered_map<std::string, bool> heard_;  // the last presence of each (bounded)
    std::unordered_set<std::string> left_online_;  // by a previous run (--state-dir)
    std::int64_t started_ms_;                      // wall clock when this run started
};

}  // namespace mqttws
