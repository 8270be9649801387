// The one upstream connection, shared by several engine shards: to each shard the hub looks like
// a broker of its own, and to the broker the shards look like one client.
//
// This is the first piece of engine shards (issue 11: each I/O thread holds an engine shard for
// its sessions). Each shard is an unchanged `engine` that emits subscribe_upstream,
// unsubscribe_upstream and publish_upstream actions with its own operation and subscription ids.
// The hub turns them into the upstream actions of the one connection and hands each shard what the
// broker would have sent it (MQTT v5 semantics, as engine.hpp relies on):
//
// - Subscriptions: one upstream SUBSCRIBE per filter, sent for the first shard that holds it, at
//   the highest QoS any shard asked for; one UNSUBSCRIBE when the last shard leaves. A shard that
//   joins a filter the broker has confirmed is answered at once, and, if it asked for them, gets
//   the filter's retained messages from the hub's store, as the broker would replay them to a
//   new subscription. A shard that joins while a SUBSCRIBE is on its way waits for its SUBACK.
// - Messages: each copy of a broker message carries the hub's subscription id; it goes, decoded
//   once and shared, only to the shards holding that filter, with their own ids for it.
// - Publishes: a shard's publish goes upstream under an id of the hub; the broker's answer goes
//   back to that shard under its own id. With No Local the broker does not send the bridge its
//   own publishes, and each shard delivers its own to its own clients (local fan-out); the hub
//   hands them to the other shards that hold a matching filter (QoS 0 at once, QoS 1/2 once the
//   broker accepted them), and keeps its retained store in step with retained ones.
// - Presence: a device's sessions are all on one shard (shard_for_auth); when its first begins
//   or its last ends, the hub tells the other shards at once (device_presence), so that a
//   command sent from any shard knows it as one engine knows its own devices.
// - The connection: its loss and return go to every shard, which then subscribe again what the
//   broker no longer holds; the hub sends each filter upstream once, under the id it had. A shard
//   tells the hub of every filter it releases, also while the connection is down
//   (engine_config::behind_hub), so that the hub's count stays exact.
//
// MQTT v5 only: with 3.1.1 there are no subscription ids to tell the copies apart, and the bridge
// keeps a single engine.
//
// Thread safety: none; the thread that owns the upstream connection (the app's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/actions.hpp"
#include "core/broker_message.hpp"
#include "core/engine_config.hpp"
#include "core/requests.hpp"
#include "core/retained_store.hpp"
#include "core/subscription_ids.hpp"
#include "core/topic_trie.hpp"

namespace mqttws {

using shard_index = std::size_t;

// What the hub hands a shard: the engine event to call, with the shard's own ids.
struct shard_message {  // engine::upstream_message, or a local publish of another shard
    std::shared_ptr<const broker_message> message;  // shared by every shard it goes to
    std::vector<std::uint32_t> subscription_ids;    // the shard's ids; empty when `local`
    bool local = false;  // published through this bridge by another shard (local fan-out)
};
struct shard_subscribed {  // engine::upstream_subscribed
    op_id op = 0;
    int granted = 0;
};
struct shard_published {  // engine::upstream_published
    op_id op = 0;
    std::optional<errc> error;
    std::string message;
};
struct shard_connected {  // engine::upstream_connected
    bool session_present = false;
};
struct shard_lost {  // engine::upstream_lost
    std::string reason;
};
struct shard_presence {  // engine::peer_presence: another shard's device_presence
    std::string device;
    bool online = false;
};
using shard_event = std::variant<shard_message, shard_subscribed, shard_published, shard_connected,
                                 shard_lost, shard_presence>;

struct shard_delivery {
    shard_index shard = 0;
    shard_event event;
};
// In the order the shards must see them (per shard).
using shard_deliveries = std::vector<shard_delivery>;

// Engine shards tell their session tokens apart by a prefix: shard k's start with "k-". A resume
// that lands on another thread finds the shard that holds its session from its token.
std::string session_token_prefix(shard_index shard);
// The shard of `token` (one of `shards`), or nullopt when it has no shard's prefix.
std::optional<shard_index> shard_of_session_token(std::string_view token, std::size_t shards);
// The configuration of shard `k` of `shards`, from the bridge's: its session tokens' prefix,
// behind the hub, its index, and the bridge's status published by shard 0 only.
engine_config config_for_shard(engine_config config, shard_index k, std::size_t shards);
// The shard that must serve a connection whose first `auth` is `r`: the shard of the session it
// resumes; else, for a device, the one its id hashes to, so that every session of one device is
// on one shard (its presence counts them, its signed frames' nonces are checked there); nullopt:
// any (the one that accepted it).
std::optional<shard_index> shard_for_auth(const auth_request& r, std::size_t shards);
// The shard every session of device `device` is on.
shard_index shard_of_device(std::string_view device, std::size_t shards);

class broker_hub {
  public:
    // `shards`: how many; `retained_max_bytes`: the bound of the retained store (retained_store);
    // `persistent_session`: the broker keeps the bridge's filters while it is disconnected.
    broker_hub(std::size_t shards, std::size_t retained_max_bytes, bool persistent_session);

    // An action of shard `from` for the broker (subscribe_upstream, unsubscribe_upstream,
    // publish_upstream) or for the other shards (device_presence, handed to each of them); any
    // other action is not the hub's and is ignored. What goes upstream is appended to `upstream`,
    // what goes to shards to `to_shards`.
    void from_shard(shard_index from, action a, action_list& upstream, shard_deliveries& to_shards);

    // The subscription id of a message the hub hands the shards for no held filter.
    static constexpr std::uint32_t no_filter = 0;

    // ---- the broker connection ----
    // The connection's return and loss are logged here, once for the bridge (into `out`); the
    // shards, behind the hub, do not log them.
    void upstream_connected(bool session_present, action_list& out, shard_deliveries& to_shards);
    void upstream_lost(std::string_view reason, action_list& out, shard_deliveries& to_shards);
    void upstream_message(std::shared_ptr<const broker_message> m, shard_deliveries& to_shards);
    // `granted`: the SUBACK return code, 0..2, or >= 0x80 (or < 0) when refused or failed.
    void upstream_subscribed(op_id op, int granted, shard_deliveries& to_shards);
    void upstream_published(op_id op, std::optional<errc> error, std::string_view message,
                            shard_deliveries& to_shards);

    // Filters held upstream, and how many shards hold `filter` (0: not held).
    std::size_t filter_count() const { return filters_.size(); }
    std::size_t holders(std::string_view filter);
    std::size_t retained_count() const { return retained_.size(); }
    std::uint64_t messages_in() const { return messages_in_; }  // from the broker

  private:
    // A shard's subscription to a held filter: its id for it and the QoS it asked for.
    struct membership {
        std::uint32_t subscription_id = 0;
        std::uint8_t qos = 0;
    };
    struct held_filter {
        std::string filter;
        std::uint32_t subscription_id = 0;  // the hub's, upstream
        std::uint8_t upstream_qos = 0;      // of the last upstream SUBSCRIBE
        int granted = -1;                   // from the broker's last SUBACK
        bool confirmed = false;             // the broker holds it
        op_id pending = 0;                  // the upstream SUBSCRIBE on its way (0: none)
        std::vector<std::optional<membership>> shards;
        std::size_t holders = 0;
    };
    // A shard waiting for the SUBACK of an upstream SUBSCRIBE.
    struct waiter {
        shard_index shard = 0;
        op_id op = 0;                    // the shard's
        bool replay_from_store = false;  // the SUBSCRIBE does not make the broker replay
    };
    struct pending_subscribe {
        std::string filter;
        std::vector<waiter> waiters;
    };
    struct pending_publish {
        shard_index shard = 0;
        op_id op = 0;                                 // the shard's
        std::shared_ptr<const broker_message> local;  // for the other shards once accepted
    };

    void subscribe(shard_index from, const subscribe_upstream& s, action_list& upstream,
                   shard_deliveries& to_shards);
    void unsubscribe(shard_index from, const unsubscribe_upstream& u, action_list& upstream);
    void publish(shard_index from, publish_upstream p, action_list& upstream,
                 shard_deliveries& to_shards);
    op_id subscribe_now(held_filter& f, bool replay_retained, bool no_local, action_list& upstream);
    // The retained messages of `f` to shard `to`, as the broker replays them after a SUBACK.
    void replay_retained(const held_filter& f, shard_index to, shard_deliveries& to_shards);
    // A publish of shard `from` to every other shard holding a matching filter.
    void fan_out_local(shard_index from, const std::shared_ptr<const broker_message>& m,
                       shard_deliveries& to_shards);
    void forget(held_filter& f);

    const std::size_t shard_count_;
    const bool persistent_session_;
    bool up_ = false;
    std::uint64_t messages_in_ = 0;
    op_id next_op_ = 1;
    topic_trie<held_filter> filters_;
    subscription_ids<held_filter> subscription_ids_;  // the hub's, upstream
    std::unordered_map<op_id, pending_subscribe> pending_subscribes_;
    std::unordered_map<op_id, pending_publish> pending_publishes_;
    retained_store retained_;
    // Scratch for upstream_message: the ids of each shard.
    std::vector<std::vector<std::uint32_t>> ids_by_shard_;
};

}  // namespace mqttws
