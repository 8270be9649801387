// The filters the bridge holds at the broker for its clients: subscribe and unsubscribe
// requests, the one upstream SUBSCRIBE per filter, SUBACKs, retained messages for clients that
// join a held filter, and resubscribing after the broker connection comes back.
//
// - All clients share ONE upstream MQTT connection. A filter is subscribed upstream when its
//   first client subscribes and unsubscribed when its last client leaves, at the highest QoS any
//   of its clients asked for (subscription_registry).
// - MQTT v5 (the default): each upstream filter carries a subscription identifier, so that the
//   router can tell which filter a copy of a message is for. Subscriptions use
//   retain-as-published, so the bridge sees every change to the broker's retained store and keeps
//   the retained messages of held topics (retained_store): a client joining a filter the bridge
//   already holds gets them from there, and the clients already subscribed are not sent them
//   again, with a single upstream SUBSCRIBE per filter.
// - MQTT 3.1.1: the broker clears the retain flag of live messages, so there is no store. A
//   joining client triggers a repeated SUBSCRIBE so that the broker replays the retained
//   messages. Mosquitto answers a SUBSCRIBE with its SUBACK and then the replay, so a message
//   with the retain flag set goes only to the clients that caused the latest SUBACK of a matching
//   filter, until `retained_grace_ms` after it (`replay_targets`).
// - With a persistent broker session the broker keeps the bridge's filters across reconnects;
//   after a restart it may deliver messages queued for filters nobody has subscribed to again
//   yet: those are held `restart_hold_ms` for the clients that do (`park`).
//
// Thread safety: none; the engine's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/broker_message.hpp"
#include "core/delivery_pacer.hpp"
#include "core/engine_context.hpp"
#include "core/retained_store.hpp"
#include "core/session_directory.hpp"
#include "core/subscription_ids.hpp"
#include "core/subscriptions.hpp"

namespace mqttws {

// What the bridge keeps per filter held at the broker.
struct upstream_state {
    int granted_qos = -1;               // from the broker's last SUBACK; -1 before the first
    std::uint32_t subscription_id = 0;  // MQTT v5 subscription identifier tagging its messages
    bool confirmed = false;             // the broker has acknowledged a SUBSCRIBE for it
    op_id last_subscribe_op = 0;
    // MQTT 3.1.1 only: who gets the retained messages the broker replays after a SUBACK, until
    // `replay_until_ms` (see above).
    std::vector<session*> replay_targets;
    std::int64_t replay_until_ms = 0;
};

class upstream_subscriptions {
  public:
    upstream_subscriptions(engine_context& ctx, session_directory& sessions, delivery_pacer& pacer);

    // ---- client requests ----
    void handle(session& s, const subscribe_request& r, action_list& out);
    void handle(session& s, const unsubscribe_request& r, action_list& out);
    // Adds `s` to `filter` (valid and allowed) and does what that needs upstream and for
    // retained messages; `reply`: the msgid its suback answers.
    void subscribe(session& s, const std::string& filter, std::uint8_t qos,
                   const subscription_options& options, std::optional<msg_id> reply,
                   action_list& out);
    // Everything `s` holds, when it ends.
    void unsubscribe_all(session& s, action_list& out);
    // Removes the subscriptions the ACL (with the session's current grant) no longer allows,
    // and tells the client `why` ("after an ACL reload").
    void recheck(session& s, std::string_view why, action_list& out);
    // The current retained messages of every filter of `s` again (a resume that lost messages).
    void resend_retained(session& s, action_list& out);

    // ---- the broker ----
    // `granted` is the SUBACK return code: 0..2, or >= 0x80 (or < 0) when refused/failed.
    void upstream_subscribed(op_id op, int granted, action_list& out);
    // `kept`: the broker kept the bridge's session (and so its filters).
    void upstream_connected(bool kept, bool first_connection, action_list& out);
    void upstream_lost();
    void tick(std::int64_t now);

    // ---- for the router ----
    // The held filters a copy of a message on `topic` is for: by its subscription ids (v5),
    // else every match.
    void routed_filters(std::string_view topic, const std::vector<std::uint32_t>& subscription_ids,
                        std::vector<upstream_filter*>& out);
    // Keeps the retained store in step with the broker's (v5).
    void record_retained(const broker_message& m);
    // A message for no held filter just after a restart: held for the clients that subscribe
    // again shortly (restart_hold_ms). True when held.
    bool park(const broker_message& m, const std::shared_ptr<const message_body>& body);

    // ---- the bridge's own subscriptions (presence, answers to its commands) ----
    // Held like a client's, by a session of the bridge's own that no connection ever has, so
    // that a client holding the same filter shares one upstream subscription with it and
    // leaving it does not unsubscribe the bridge. What it receives is for the engine, not for a
    // client: the router says so, and retained messages it is given wait in own_retained().
    void subscribe_own(const std::string& filter, action_list& out);
    bool is_own(const session* s) const { return s == &self_; }
    std::vector<broker_message>& own_retained() { return own_retained_; }

    // Filters held for clients (the bridge's own subscriptions not counted unless a client
    // holds the same filter).
    std::size_t filter_count() const;
    // The bridge's own filters that no client holds.
    std::vector<std::string> own_only_filters() const;
    std::size_t retained_count() const { return retained_.size(); }
    std::size_t parked_count() const { return parked_.size(); }

  private:
    struct pending_subscribe {
        std::string filter;
        std::vector<session_key> replay_to;  // MQTT 3.1.1: sessions the broker's replay is for
    };
    struct parked_message {
        std::shared_ptr<const message_body> body;
        std::string topic;
        std::uint8_t qos = 0;
    };

    // `broker_refused`: the broker refused the SUBSCRIBE; nothing to undo upstream for it.
    void unsubscribe(session& s, const std::string& filter, action_list& out,
                     bool broker_refused = false);
    // `replay_to`: MQTT 3.1.1 only, the sessions that get the retained messages the broker
    // replays after this SUBSCRIBE (see upstream_subscribed).
    op_id subscribe_upstream_now(upstream_filter& entry, bool replay_retained,
                                 std::vector<session_key> replay_to, action_list& out);
    void release_filter(std::string_view filter, std::uint32_t subscription_id,
                        bool unsubscribe_upstream_too, action_list& out);
    // Sends `s` the current retained messages of `filter` (a client joining a held filter).
    void send_retained(session& s, const std::string& filter, const client_subscription& sub,
                       action_list& out);
    void deliver_parked(session& s, std::string_view filter, const client_subscription& sub,
                        action_list& out);
    std::shared_ptr<const message_body> retained_body(const session& s,
                                                      const retained_message& m) const;

    engine_context& ctx_;
    session_directory& sessions_;
    delivery_pacer& pacer_;
    subscription_registry<upstream_state> registry_;
    retained_store retained_;
    subscription_ids<upstream_filter> subscription_ids_;  // MQTT 5
    std::unordered_map<op_id, pending_subscribe> pending_subscribes_;
    std::vector<std::string> open_replay_windows_;  // MQTT 3.1.1: filters with replay targets
    std::unordered_set<std::string> released_while_down_;  // persistent session: to unsubscribe
    std::deque<parked_message> parked_;
    session self_{session_key{0}, "bridge"};
    std::vector<broker_message> own_retained_;
    std::int64_t parked_until_ms_ = 0;  // 0: not holding (see restart_hold_ms)
};

}  // namespace mqttws
