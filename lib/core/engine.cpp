#include "core/engine.hpp"

#include <algorithm>

#include "core/handshake.hpp"

namespace mqttws {
namespace {

// A publish that was in flight on this many lost broker connections is answered with an error:
// it may be what makes the broker drop the connection, and it must not do so forever.
constexpr int max_publish_attempts = 3;

// A `batch` frame is sent once its messages reach this size, whatever its maxMessages says, so
// that a batch waiting for its delay holds a bounded number of bytes.
constexpr std::size_t max_batch_bytes = 64u << 10;

bool refused_code(int granted) {
    return granted < 0 || granted >= 0x80;
}

// The msgid of a request, if it has one (acks and batches do not: their entries do).
const msg_id& request_id(const client_request& request) {
    static const msg_id none;
    return std::visit(
        [](const auto& r) -> const msg_id& {
            if constexpr (std::is_same_v<std::decay_t<decltype(r)>, ack_request> ||
                          std::is_same_v<std::decay_t<decltype(r)>, batch_request>) {
                return none;
            } else {
                return r.id;
            }
        },
        request);
}

}  // namespace

engine::engine(engine_config config, platform& env, std::shared_ptr<const security_policy> policy)
    : config_(std::move(config)),
      env_(env),
      policy_(std::move(policy)),
      decoder_(config_.decode),
      retained_(config_.retained_cache_bytes),
      auth_limits_(
          auth_limits{config_.auth_failures_per_minute, config_.auth_failures_per_user_per_minute}),
      replays_(config_.replay_window_ms, config_.replay_nonces_per_device) {}

engine::~engine() = default;

std::string_view name(out_kind k) {
    static constexpr std::string_view names[] = {
        "auth_response", "suback",  "unsuback", "ack",  "error",          "pong",
        "status",        "message", "batch",    "ping", "token_expiring", "refresh_response"};
    return names[static_cast<std::size_t>(k)];
}

static_assert(std::variant_size_v<client_request> == static_cast<std::size_t>(in_kind::binary),
              "in_kind lists the client_request alternatives first, in order");

std::string_view name(in_kind k) {
    static constexpr std::string_view names[] = {"auth",    "subscribe", "unsubscribe",   "publish",
                                                 "ack",     "ping",      "device_report", "batch",
                                                 "refresh", "binary",    "invalid"};
    return names[static_cast<std::size_t>(k)];
}

// ---------------------------------------------------------------- helpers

session* engine::find_session(connection_id id) {
    const auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second;
}

session* engine::find_session_by_key(std::uint64_t key) {
    const auto it = sessions_.find(key);
    return it == sessions_.end() ? nullptr : it->second.get();
}

// Every frame to a client goes through here, so that every byte held for it counts against its
// budget (send_budget): deliveries, replies and errors alike.
void engine::send(session& s, out_kind kind, frame_ptr frame, action_list& out, bool binary) {
    // Detached: nothing reaches it until a resume. Closing: nothing more is read or written
    // (what it missed is in its outbox for a resume).
    if (s.connection() == 0 || s.closing) return;
    ++s.counters().frames_out;
    ++stats_.frames_out[static_cast<std::size_t>(kind)];
    const std::size_t bytes = frame->size();
    out.push_back(send_frame{s.connection(), std::move(frame), binary});
    count_outgoing(s, bytes, out);
}

void engine::count_outgoing(session& s, std::size_t bytes, action_list& out) {
    send_budget& budget = s.budget();
    budget.add(bytes, event_);
    if (s.app_pings) s.last_sent_ms = env_.steady_ms();
    const std::size_t limit = budget_limit(s);
    if (budget.estimate() <= limit) return;
    if (!budget.congested()) {
        if (measure(s) > limit) enter_congestion(s);
    } else if (budget.estimate() > 2 * limit && measure(s) > 2 * limit) {
        // Congested, only answers to its own requests were sent, and they alone went past twice
        // the budget: it sends and does not read. Without this, it could make the bridge hold
        // any amount of memory within the slow-consumer timeout.
        ++stats_.slow_consumers;
        s.closing = true;
        out.push_back(close_client{s.connection(), close_code::slow_consumer, "Slow consumer"});
    }
}

// ---------------------------------------------------------------- the outgoing budget

// The outbox's view of a session's connection.
class engine::session_sink final : public delivery_sink {
  public:
    session_sink(engine& e, session& s, action_list& out) : engine_(e), session_(s), out_(out) {}
    std::uint64_t send(const delivery& d, bool dup) override {
        engine_.send_delivery(session_, d, dup, out_);
        // A batched delivery leaves with its batch: count the batch as handed over already.
        return session_.budget().queued_total() + session_.batch_bytes;
    }
    bool has_room() const override { return !session_.budget().congested() && !session_.closing; }
    std::uint64_t written() const override { return session_.budget().written_total(); }

  private:
    engine& engine_;
    session& session_;
    action_list& out_;
};

std::size_t engine::budget_limit(const session& s) const {
    return s.authenticated() ? config_.max_queued_bytes
                             : std::min(config_.max_queued_bytes, config_.pre_auth_queued_bytes);
}

std::size_t engine::measure(session& s) {
    s.budget().measure(env_.buffered_bytes(s.connection()), event_);
    return s.budget().estimate();
}

void engine::enter_congestion(session& s) {
    send_budget& budget = s.budget();
    budget.set_congested(true);
    if (budget.over_since_ms() == 0) budget.set_over_since(env_.steady_ms());
    congested_.insert(&s);
}

void engine::leave_congestion(session& s, action_list& out) {
    send_budget& budget = s.budget();
    budget.set_congested(false);
    congested_.erase(&s);
    if (s.deliveries().backlog_bytes() <= config_.max_queued_bytes) budget.set_over_since(0);
    const std::int64_t now = env_.steady_ms();
    release_held(s, now, out);
    session_sink sink(*this, s, out);
    s.deliveries().resend_due(now, sink);
}

void engine::poll_congested(action_list& out) {
    begin_event();
    const std::vector<session*> waiting(congested_.begin(), congested_.end());
    for (session* s : waiting) {
        if (congested_.count(s) == 0) continue;  // ended meanwhile
        if (measure(*s) <= budget_limit(*s) / 2) leave_congestion(*s, out);
    }
}

void engine::bound_backlog(session& s, action_list& out) {
    if (s.deliveries().backlog_bytes() <= config_.max_backlog_bytes) return;
    if (s.connection() != 0 && !s.closing) {
        // Hopeless: it has not taken what it was sent, and QoS 1/2 keep coming. It resumes.
        ++stats_.slow_consumers;
        s.closing = true;
        out.push_back(close_client{s.connection(), close_code::slow_consumer, "Slow consumer"});
        return;
    }
    stats_.backlog_shed += s.deliveries().shed_backlog(config_.max_backlog_bytes);
}

void engine::send_error(session& s, errc code, std::string_view message, const msg_id& id,
                        action_list& out, std::string_view topic) {
    ++s.counters().errors;
    send(s, out_kind::error, encode_error(code, message, id, topic), out);
}

void engine::broadcast(const frame_ptr& frame, action_list& out) {
    for (auto& [id, s] : connections_) {
        if (s->authenticated()) send(*s, out_kind::status, frame, out);
    }
}

// ---------------------------------------------------------------- connection events

void engine::client_opened(connection_id id, std::string remote_address,
                           handshake_credentials handshake, action_list& out) {
    begin_event();
    const std::uint64_t key = next_session_key_++;
    auto owned = std::make_unique<session>(key, std::move(remote_address), config_.outbox);
    session& s = *owned;
    s.attach(id);
    s.last_alive_ms = env_.steady_ms();
    connections_[id] = &s;
    sessions_.emplace(key, std::move(owned));

    const bool self_contained =
        policy_->auth.configured() && policy_->auth.self_contained(handshake);
    s.set_handshake(std::move(handshake));
    if (self_contained) {
        // Credentials in the handshake are checked at once: a wrong token never gets further.
        // (A bare token for a password file waits for the `auth` frame naming the user.) When
        // valid, the client may send `auth` (to resume) or go straight to requests.
        check_credentials(s, nullptr, out);
        return;
    }
    if (policy_->auth.required()) s.auth_deadline_ms = env_.steady_ms() + config_.auth_timeout_ms;
}

void engine::client_text(connection_id id, std::string_view frame, action_list& out) {
    begin_event();
    session* s = find_session(id);
    if (s == nullptr) return;
    ++s->counters().frames_in;
    s->last_alive_ms = env_.steady_ms();
    auto decoded = decoder_.decode(frame);
    if (auto* failure = std::get_if<decode_failure>(&decoded)) {
        ++stats_.frames_in[static_cast<std::size_t>(in_kind::invalid)];
        send_error(*s, failure->code, failure->message, failure->id, out);
        return;
    }
    auto& request = std::get<client_request>(decoded);
    ++stats_.frames_in[request.index()];  // in_kind follows client_request's order
    if (!std::holds_alternative<auth_request>(request) &&
        !ensure_authenticated(*s, request_id(request), out)) {
        return;
    }
    if (!signature_accepted(*s, frame, request, out)) return;
    std::visit([&](auto& r) { handle(*s, r, out); }, request);
}

bool engine::signature_accepted(session& s, std::string_view frame, const client_request& request,
                                action_list& out) {
    const signature_fields* proof = nullptr;
    std::uint8_t qos = 0;
    if (const auto* p = std::get_if<publish_request>(&request)) {
        proof = &p->proof;
        qos = p->qos;
    } else if (const auto* d = std::get_if<device_report_request>(&request)) {
        proof = &d->proof;
        qos = d->id.empty() ? 0 : 1;  // a report with a msgid is acked
    } else if (const auto* b = std::get_if<batch_request>(&request)) {
        proof = &b->proof;
    } else {
        return true;  // other frames are not signed
    }
    const device_keys::key* key = policy_->signing_keys.find(s.client_id());
    if (key == nullptr) return true;  // not a device with a key
    const auto refuse = [&](errc code, std::string message) {
        ++(code == errc::replayed ? stats_.replays_refused : stats_.signatures_refused);
        audit(s, code == errc::replayed ? "replayed" : "bad_signature", {}, message, out);
        refuse_publish(s, qos, request_id(request), code, message, out);
        return false;
    };
    const std::optional<frame_signature> signature = split_signature(frame);
    if (!signature) {
        if (!key->required) return true;
        return refuse(errc::bad_signature, "frames of this device must be signed");
    }
    if (proof->sig != signature->signature)
        return refuse(errc::bad_signature, "'sig' must be the last member of the frame");
    if (!signature_valid(key->secret, *signature))
        return refuse(errc::bad_signature, "the signature does not verify");
    if (!proof->ts || !valid_nonce(proof->nonce)) {
        return refuse(errc::bad_signature,
                      "a signed frame needs 'ts' (ms) and a 'nonce' of 8 to 64 characters");
    }
    if (!replays_.fresh(s.client_id(), *proof->ts, proof->nonce, env_.wall_ms())) {
        return refuse(errc::replayed,
                      "'ts' is outside the replay window, or the nonce was seen before");
    }
    return true;
}

void engine::client_closed(connection_id id, std::uint16_t code, bool by_peer, action_list& out) {
    begin_event();
    const auto bridge_closed_for = [&](close_code c) {
        return !by_peer && code == static_cast<std::uint16_t>(c);
    };
    const bool clean = by_peer ? (code == 1000 || code == 1005)
                               : !(bridge_closed_for(close_code::heartbeat_timeout) ||
                                   bridge_closed_for(close_code::slow_consumer) ||
                                   bridge_closed_for(close_code::token_expired));
    const auto it = connections_.find(id);
    if (it == connections_.end()) return;  // e.g. a connection whose session was taken over
    session& s = *it->second;
    connections_.erase(it);
    congested_.erase(&s);
    if (clean || !s.authenticated() || !s.resumable() || config_.resume_window_ms <= 0) {
        end_session(s, out);
    } else {
        s.detach(env_.steady_ms() + config_.resume_window_ms);
    }
}

void engine::client_alive(connection_id id) {
    begin_event();
    if (session* s = find_session(id)) s->last_alive_ms = env_.steady_ms();
}

bool engine::client_pinged(connection_id id, std::size_t payload_bytes, action_list& out) {
    begin_event();
    session* s = find_session(id);
    if (s == nullptr || s->closing) return false;
    s->last_alive_ms = env_.steady_ms();
    count_outgoing(*s, payload_bytes, out);  // the pong the edge will queue
    return !s->closing;
}

void engine::end_session(session& s, action_list& out) {
    std::vector<std::string> filters;
    filters.reserve(s.subscriptions().size());
    for (const auto& entry : s.subscriptions())
        filters.push_back(entry.first);
    for (const auto& f : filters)
        unsubscribe(s, f, out);
    if (s.resumable()) tokens_.erase(s.token());
    if (s.connection() != 0) connections_.erase(s.connection());
    congested_.erase(&s);
    sessions_.erase(s.key());
}

// ---------------------------------------------------------------- authentication

bool engine::ensure_authenticated(session& s, const msg_id& id, action_list& out) {
    if (s.authenticated()) return true;
    // A request before `auth`: the handshake's credentials, or anonymous where allowed. A
    // client without either is told to authenticate (and closed at its auth deadline).
    auto checked = policy_->auth.authenticate(nullptr, s.handshake(), env_.wall_ms() / 1000);
    const auto* who = std::get_if<identity>(&checked);
    if (who == nullptr || policy_->revoked.revokes(who->client_id, who->username, who->token_id)) {
        send_error(s, errc::not_authenticated, "send an auth frame with credentials first", id,
                   out);
        return false;
    }
    authenticate(s, std::get<identity>(std::move(checked)), false, out);
    return true;
}

void engine::authenticate(session& s, identity who, bool is_device, action_list& out) {
    std::string client_id =
        who.client_id.empty() ? "anon-" + env_.random_hex(6) : std::move(who.client_id);
    std::string control_topic;
    if (is_device) control_topic = config_.device_topic_prefix + "/" + client_id + "/control";
    s.authenticate(std::move(client_id), is_device, control_topic);
    const std::string method = who.method;
    take_credentials(s, who);
    s.auth_deadline_ms = 0;
    if (method != "anonymous") audit(s, "auth_success", {}, method, out);
    if (is_device) {
        const acl_decision allowed =
            policy_->rules.check_subscribe(s.client_id(), s.username(), control_topic, s.grant());
        if (allowed.allowed) {
            subscribe(s, control_topic, 0, {}, std::nullopt, out);
        } else {
            audit(s, "denied", control_topic, allowed.reason, out);
        }
    }
}

std::optional<identity> engine::check_credentials(session& s, const auth_request* frame,
                                                  action_list& out) {
    const std::int64_t now = env_.steady_ms();
    const std::string address = address_without_port(s.remote_address());
    const auto refuse = [&](close_code code, std::string reason) -> std::optional<identity> {
        out.push_back(audit_record{"auth_failure",
                                   frame != nullptr ? frame->client_id : "",
                                   s.remote_address(),
                                   {},
                                   std::move(reason)});
        out.push_back(close_client{s.connection(), code,
                                   code == close_code::auth_rate_limited
                                       ? "Too many failed authentication attempts"
                                       : "Authentication failed"});
        s.closing = true;
        return std::nullopt;
    };
    if (!auth_limits_.address_allowed(address, now))
        return refuse(close_code::auth_rate_limited, "too many failed attempts from this address");
    // The per-user limit is applied before the (deliberately slow) password check.
    const std::string user = policy_->auth.password_user(frame, s.handshake());
    if (!user.empty() && !auth_limits_.user_allowed(user, address, now)) {
        ++stats_.auth_failures;
        return refuse(close_code::auth_rate_limited,
                      "too many failed attempts for user '" + user + "'");
    }
    auto checked = policy_->auth.authenticate(frame, s.handshake(), env_.wall_ms() / 1000);
    if (auto* refusal = std::get_if<auth_refusal>(&checked)) {
        ++stats_.auth_failures;
        auth_limits_.failed(address, user, now);
        return refuse(close_code::auth_failed, std::move(refusal->reason));
    }
    identity& who = std::get<identity>(checked);
    if (auto why = policy_->revoked.revokes(who.client_id, who.username, who.token_id))
        return refuse(close_code::auth_failed, std::move(*why));
    auth_limits_.succeeded(user, address);
    return std::move(who);
}

void engine::audit(const session& s, std::string event, std::string topic, std::string detail,
                   action_list& out) {
    out.push_back(audit_record{std::move(event), s.client_id(), s.remote_address(),
                               std::move(topic), std::move(detail)});
}

bool engine::audited_topic(std::string_view topic) const {
    if (topic::matches(config_.device_topic_prefix + "/+/control", topic)) return true;
    return std::any_of(config_.audit_topics.begin(), config_.audit_topics.end(),
                       [&](const std::string& f) { return topic::matches(f, topic); });
}

void engine::handle(session& s, auth_request& r, action_list& out) {
    if (s.authenticated()) {
        send_error(s, errc::bad_request, "already authenticated as '" + s.client_id() + "'", r.id,
                   out);
        return;
    }
    std::optional<identity> checked = check_credentials(s, &r, out);
    if (!checked) return;
    identity who = std::move(*checked);
    if (who.client_id.empty()) who.client_id = "anon-" + env_.random_hex(6);
    if (!r.session.empty()) {
        const auto it = tokens_.find(r.session);
        if (it != tokens_.end() && it->second != &s && it->second->client_id() == who.client_id) {
            resume(s, *it->second, r, std::move(who), out);
            return;
        }
        // Unknown, expired, or another client's: a new session (sessionPresent:false).
    }
    if (r.resume && config_.resume_window_ms > 0) {
        s.set_token(env_.random_hex(16));
        tokens_[s.token()] = &s;
    }
    s.app_pings = r.heartbeat;
    // The response goes first: frames caused by authenticating (a device's retained control
    // message, the upstream status) follow it.
    send(s, out_kind::auth_response,
         encode_auth_response(who.client_id, s.token(), false, false, env_.wall_ms(), r.id,
                              r.heartbeat ? config_.ping_interval_ms : 0),
         out);
    authenticate(s, std::move(who), r.is_device, out);
    if (!upstream_up_)
        send(s, out_kind::status, encode_upstream_status(false, env_.wall_ms()), out);
}

void engine::resume(session& fresh, session& old, const auth_request& r, identity who,
                    action_list& out) {
    const connection_id conn = fresh.connection();
    const std::int64_t fresh_alive = fresh.last_alive_ms;
    connections_.erase(conn);
    congested_.erase(&fresh);
    congested_.erase(&old);
    sessions_.erase(fresh.key());  // it had only just been opened: nothing to keep
    if (old.connection() != 0) {
        // A half-open connection still holds the session: the new one takes over.
        out.push_back(close_client{old.connection(), close_code::session_taken_over,
                                   "Session taken over by a new connection"});
        connections_.erase(old.connection());
    }
    old.attach(conn);            // a new connection: a new budget, whatever the old one's state was
    take_credentials(old, who);  // the new token's expiry and claims are the session's now
    old.last_alive_ms = fresh_alive;
    old.app_pings = r.heartbeat;
    old.last_sent_ms = fresh_alive;
    connections_[conn] = &old;
    ++stats_.resumes;

    const bool resumed = r.last_seq && old.deliveries().can_resume_from(*r.last_seq);
    if (!resumed) ++stats_.resumes_with_gap;
    send(old, out_kind::auth_response,
         encode_auth_response(old.client_id(), old.token(), resumed, true, env_.wall_ms(), r.id,
                              r.heartbeat ? config_.ping_interval_ms : 0,
                              old.deliveries().last_seq()),
         out);
    session_sink sink(*this, old, out);
    old.deliveries().reconnect(resumed ? r.last_seq : std::nullopt, env_.steady_ms(), sink);
    if (!resumed) {
        // Something may be lost: give the client the current state of its topics again.
        for (const auto& [filter, sub] : old.subscriptions())
            send_retained(old, filter, sub, out);
    }
    if (!upstream_up_)
        send(old, out_kind::status, encode_upstream_status(false, env_.wall_ms()), out);
}

// ---------------------------------------------------------------- subscribe / unsubscribe

void engine::handle(session& s, subscribe_request& r, action_list& out) {
    for (const auto& filter : r.filters) {
        if (auto problem = topic::check_filter(filter, config_.topic_limits)) {
            send_error(s, problem->too_large ? errc::too_large : errc::bad_request,
                       problem->message, r.id, out, filter);
            continue;
        }
        if (topic::split_shared(filter)) {
            send_error(s, errc::unsupported,
                       "shared subscriptions ($share/...) are not supported by this bridge", r.id,
                       out, filter);
            continue;
        }
        const acl_decision allowed =
            policy_->rules.check_subscribe(s.client_id(), s.username(), filter, s.grant());
        if (!allowed.allowed) {
            ++stats_.denied;
            audit(s, "denied", filter, allowed.reason, out);
            send_error(s, errc::forbidden, allowed.reason, r.id, out, filter);
            continue;
        }
        const bool is_new = s.subscriptions().find(filter) == s.subscriptions().end();
        if (is_new && s.subscriptions().size() >= config_.max_subscriptions_per_client) {
            send_error(s, errc::too_large,
                       "this client already holds " +
                           std::to_string(config_.max_subscriptions_per_client) +
                           " subscriptions, the limit",
                       r.id, out, filter);
            continue;
        }
        subscribe(s, filter, r.qos, r.options, r.id, out);
    }
}

void engine::subscribe(session& s, const std::string& filter, std::uint8_t qos,
                       const subscription_options& options, std::optional<msg_id> reply,
                       action_list& out) {
    client_subscription& sub = s.subscriptions()[filter];
    sub.qos = qos;
    sub.options = options;
    sub.pending_suback = std::move(reply);
    sub.waiting_op = 0;

    const auto added = registry_.add(filter, &s, qos);
    upstream_filter& entry = *added.entry;
    sub.upstream = &entry;
    const bool v5 = config_.mqtt_version >= 5;
    if (parked_until_ms_ != 0) deliver_parked(s, filter, sub, out);

    if (added.is_first) {
        released_while_down_.erase(filter);
        if (v5) {
            entry.subscription_id = next_subscription_id_++;
            filters_by_subscription_id_[entry.subscription_id] = &entry;
        }
        // While the broker is down, upstream_connected() subscribes every held filter.
        if (upstream_up_) sub.waiting_op = subscribe_upstream_now(entry, true, {s.key()}, out);
        return;
    }

    if (!v5) {
        // MQTT 3.1.1 cannot tell which live messages are retained, so there is no retained
        // store: subscribe again and route the broker's replay to this client only.
        if (upstream_up_) sub.waiting_op = subscribe_upstream_now(entry, true, {s.key()}, out);
        return;
    }

    if (added.qos_changed && upstream_up_) {
        sub.waiting_op = subscribe_upstream_now(entry, false, {}, out);
    } else if (upstream_up_ && pending_subscribes_.count(entry.last_subscribe_op) > 0) {
        sub.waiting_op = entry.last_subscribe_op;  // its answer has the granted qos to report
    }
    // A confirmed filter's retained messages are all in the store; an unconfirmed one's are
    // still to come from the broker, and reach this client through normal routing.
    if (entry.confirmed) send_retained(s, filter, sub, out);
    if (sub.waiting_op == 0 && entry.confirmed && sub.pending_suback) {
        send(s, out_kind::suback,
             encode_suback(*sub.pending_suback, filter, std::min<int>(qos, entry.granted_qos)),
             out);
        sub.pending_suback.reset();
    }
}

op_id engine::subscribe_upstream_now(upstream_filter& entry, bool replay_retained,
                                     std::vector<std::uint64_t> replay_to, action_list& out) {
    const op_id op = next_op_++;
    out.push_back(subscribe_upstream{op, entry.filter, entry.upstream_qos, entry.subscription_id,
                                     replay_retained});
    pending_subscribes_[op] = pending_subscribe{entry.filter, std::move(replay_to)};
    entry.last_subscribe_op = op;
    return op;
}

void engine::send_retained(session& s, const std::string& filter, const client_subscription& sub,
                           action_list& out) {
    upstream_filter* entry = registry_.find(filter);
    if (entry == nullptr) return;
    if (config_.mqtt_version < 5) {
        // No store with 3.1.1: ask the broker to replay, routed to this client only.
        if (upstream_up_) subscribe_upstream_now(*entry, true, {s.key()}, out);
        return;
    }
    if (!entry->confirmed) return;  // the broker's replay is still to come
    const std::int64_t now = env_.wall_ms();
    retained_.for_each_matching(filter, [&](const retained_message& m) {
        const bool control = s.is_device() && m.topic == s.control_topic();
        auto body =
            std::make_shared<const message_body>(control ? "control" : "message", m.topic,
                                                 m.payload, true, now, config_.decode.max_depth);
        deliver(s, body, std::min(sub.qos, m.qos), sub.options, out);
    });
}

void engine::upstream_subscribed(op_id op, int granted, action_list& out) {
    begin_event();
    const auto pending = pending_subscribes_.find(op);
    if (pending == pending_subscribes_.end()) return;  // superseded by a reconnect
    const std::string filter = std::move(pending->second.filter);
    const std::vector<std::uint64_t> replay_to = std::move(pending->second.replay_to);
    pending_subscribes_.erase(pending);
    upstream_filter* entry = registry_.find(filter);
    if (entry == nullptr) return;  // everyone left meanwhile (and it was unsubscribed)

    const bool refused = refused_code(granted);
    if (!refused) {
        entry->granted_qos = granted;
        entry->confirmed = true;
    }
    if (config_.mqtt_version < 5) {
        // Mosquitto sends a SUBACK, then the retained messages it replays for that SUBSCRIBE:
        // until the next SUBACK for this filter, retained messages go to who caused this one.
        entry->replay_targets.clear();
        for (const std::uint64_t key : replay_to) {
            session* who = find_session_by_key(key);
            if (who != nullptr && who->subscriptions().count(filter) > 0)
                entry->replay_targets.push_back(who);
        }
        if (entry->replay_until_ms == 0) open_replay_windows_.push_back(filter);
        entry->replay_until_ms = env_.steady_ms() + config_.retained_grace_ms;
    }

    std::vector<session*> rejected;
    for (const auto& sub : entry->subscribers) {
        auto it = sub.who->subscriptions().find(filter);
        if (it == sub.who->subscriptions().end() || it->second.waiting_op != op) continue;
        client_subscription& cs = it->second;
        cs.waiting_op = 0;
        if (refused) {
            rejected.push_back(sub.who);
            send_error(*sub.who, errc::forbidden, "the broker refused the subscription",
                       cs.pending_suback.value_or(msg_id{}), out, filter);
        } else if (cs.pending_suback) {
            send(*sub.who, out_kind::suback,
                 encode_suback(*cs.pending_suback, filter, std::min<int>(cs.qos, granted)), out);
            cs.pending_suback.reset();
        }
    }
    for (session* s : rejected)
        unsubscribe(*s, filter, out, /*broker_refused=*/true);
}

void engine::handle(session& s, unsubscribe_request& r, action_list& out) {
    for (const auto& filter : r.filters) {
        if (auto problem = topic::check_filter(filter, config_.topic_limits)) {
            send_error(s, problem->too_large ? errc::too_large : errc::bad_request,
                       problem->message, r.id, out, filter);
            continue;
        }
        unsubscribe(s, filter, out);
        send(s, out_kind::unsuback, encode_unsuback(r.id, filter), out);
    }
}

void engine::unsubscribe(session& s, const std::string& filter, action_list& out,
                         bool broker_refused) {
    const auto it = s.subscriptions().find(filter);
    if (it == s.subscriptions().end()) return;
    s.subscriptions().erase(it);
    upstream_filter* entry = registry_.find(filter);
    if (entry == nullptr) return;
    const std::uint32_t subscription_id = entry->subscription_id;
    const bool broker_holds_it = entry->confirmed;
    const auto removed = registry_.remove(filter, &s);
    if (removed.was_last) {
        // After a refusal the broker holds nothing to unsubscribe, unless an earlier SUBSCRIBE
        // of the filter was granted.
        release_filter(filter, subscription_id, !broker_refused || broker_holds_it, out);
    } else if (removed.qos_changed && upstream_up_ && !broker_refused) {
        subscribe_upstream_now(*registry_.find(filter), false, {}, out);
    }
}

void engine::release_filter(std::string_view filter, std::uint32_t subscription_id,
                            bool unsubscribe_upstream_too, action_list& out) {
    if (subscription_id != 0) filters_by_subscription_id_.erase(subscription_id);
    // Shutting down: the broker keeps what it holds (a persistent session must keep its
    // subscriptions so that it queues messages until the bridge is back).
    if (unsubscribe_upstream_too && !shutting_down_) {
        if (upstream_up_) {
            out.push_back(unsubscribe_upstream{next_op_++, std::string(filter)});
        } else if (config_.persistent_session) {
            released_while_down_.emplace(filter);  // the broker still holds it
        }
    }
    if (config_.mqtt_version >= 5) {
        retained_.evict_under(filter, [&](const std::string& topic) {
            bool held = false;
            registry_.match(topic, [&](upstream_filter&) { held = true; });
            return held;
        });
    }
}

// ---------------------------------------------------------------- publish

void engine::handle(session& s, publish_request& r, action_list& out) {
    if (auto problem = topic::check_name(r.topic, config_.topic_limits)) {
        refuse_publish(s, r.qos, r.id, problem->too_large ? errc::too_large : errc::bad_request,
                       problem->message, out);
        return;
    }
    if (r.qos == 2) {
        // Exactly once: a resend of a QoS 2 publish (same msgid) is answered, not published again.
        if (publish_memory* m = s.recall_publish(r.id.json)) {
            if (m->pending) {
                ++m->extra_acks;
                ++stats_.publish_duplicates;
                return;
            }
            if (r.dup) {
                ++stats_.publish_duplicates;
                answer_publish(s, r.id, m->error, m->message, out);
                return;
            }
        }
        s.remember_publish(r.id.json);  // pending until the broker's PUBCOMP
    }
    publish(s, std::move(r.topic), std::move(r.payload), r.qos, r.retain, r.id, out);
}

void engine::handle(session& s, batch_request& r, action_list& out) {
    for (auto& entry : r.entries) {
        if (auto* failure = std::get_if<decode_failure>(&entry)) {
            send_error(s, failure->code, failure->message, failure->id, out);
        } else {
            handle(s, std::get<publish_request>(entry), out);
        }
    }
}

void engine::client_binary(connection_id id, std::string_view frame, action_list& out) {
    begin_event();
    session* s = find_session(id);
    if (s == nullptr) return;
    ++s->counters().frames_in;
    ++stats_.frames_in[static_cast<std::size_t>(in_kind::binary)];
    s->last_alive_ms = env_.steady_ms();
    auto decoded = decode_binary_publish(frame, config_.decode.max_payload_bytes);
    if (auto* failure = std::get_if<decode_failure>(&decoded)) {
        send_error(*s, failure->code, failure->message, failure->id, out);
        return;
    }
    auto& publish = std::get<publish_request>(decoded);
    if (!ensure_authenticated(*s, publish.id, out)) return;
    const device_keys::key* key = policy_->signing_keys.find(s->client_id());
    if (key != nullptr && key->required) {
        // A binary frame has no room for a signature.
        ++stats_.signatures_refused;
        refuse_publish(*s, publish.qos, publish.id, errc::bad_signature,
                       "this device must sign its frames; binary frames cannot be signed", out);
        return;
    }
    handle(*s, publish, out);
}

void engine::handle(session& s, device_report_request& r, action_list& out) {
    if (r.device_id != s.client_id()) {
        ++stats_.denied;
        audit(s, "denied", config_.device_topic_prefix + "/" + r.device_id,
              "a device may only report as itself", out);
        send_error(s, errc::forbidden,
                   "a device may only report as itself; this connection is '" + s.client_id() + "'",
                   r.id, out);
        return;
    }
    const bool status = r.what == device_report_request::kind::status;
    std::string topic =
        config_.device_topic_prefix + "/" + r.device_id + (status ? "/status" : "/event");
    // A status is retained so that a dashboard subscribing later sees every device's last one.
    publish(s, std::move(topic), std::move(r.frame_json), 1, status, r.id, out);
}

void engine::answer_publish(session& s, const msg_id& reply_to, std::optional<errc> error,
                            std::string_view message, action_list& out) {
    if (error) {
        ++s.counters().errors;
        send(s, out_kind::ack, encode_ack_error(reply_to, *error, message), out);
    } else {
        send(s, out_kind::ack, encode_ack_ok(reply_to), out);
    }
}

void engine::refuse_publish(session& s, std::uint8_t qos, const msg_id& reply_to, errc code,
                            std::string_view message, action_list& out) {
    if (qos == 2 && !reply_to.empty()) {
        if (publish_memory* m = s.recall_publish(reply_to.json)) {
            m->pending = false;
            m->error = code;
            m->message = std::string(message);
        }
    }
    if (qos > 0 && !reply_to.empty()) {
        answer_publish(s, reply_to, code, message, out);
    } else {
        send_error(s, code, message, reply_to, out);
    }
}

void engine::publish(session& s, std::string topic, std::string payload, std::uint8_t qos,
                     bool retain, const msg_id& reply_to, action_list& out) {
    const acl_decision allowed =
        policy_->rules.check_publish(s.client_id(), s.username(), topic, s.grant());
    if (!allowed.allowed) {
        ++stats_.denied;
        audit(s, "denied", topic, allowed.reason, out);
        refuse_publish(s, qos, reply_to, errc::forbidden, allowed.reason, out);
        return;
    }
    const double burst =
        config_.publish_burst > 0 ? config_.publish_burst : std::max(1.0, config_.publish_rate);
    if (!s.take_publish_token(env_.steady_ms(), config_.publish_rate, burst)) {
        ++stats_.rate_limited;
        // A QoS 0 publish without a msgid asked for no answer (docs/security.md): a client
        // flooding them must not get a flood of errors queued for it.
        if (qos == 0 && reply_to.empty()) return;
        refuse_publish(s, qos, reply_to, errc::rate_limited,
                       "over this client's publish rate limit", out);
        return;
    }
    if (audited_topic(topic)) audit(s, "publish", topic, {}, out);
    ++s.counters().publishes;
    pending_publish p{s.key(), reply_to,
                      publish_upstream{0, std::move(topic), std::move(payload), qos, retain}, 0};
    // QoS 1/2 wait behind publishes held for a retry, so that they reach the broker in order.
    if (upstream_up_ && (qos == 0 || offline_queue_.empty())) {
        publish_now(std::move(p), out);
        return;
    }
    if (qos == 0) {
        ++stats_.publishes_dropped;
        if (!reply_to.empty()) {
            send_error(s, errc::unavailable,
                       "the broker is unreachable; qos 0 publishes are dropped until it is back",
                       reply_to, out);
        }
        return;
    }
    const std::size_t bytes = p.request.topic.size() + p.request.payload.size();
    if (offline_queue_.size() >= config_.offline_queue_messages ||
        offline_queue_bytes_ + bytes > config_.offline_queue_bytes) {
        ++stats_.publishes_refused;
        refuse_publish(s, qos, reply_to, errc::unavailable,
                       "the broker is unreachable and the bridge's offline queue is full", out);
        return;
    }
    queue_offline(std::move(p));
}

void engine::queue_offline(pending_publish p) {
    offline_queue_bytes_ += p.request.topic.size() + p.request.payload.size();
    offline_queue_.push_back(std::move(p));
}

void engine::queue_retry(pending_publish p) {
    // Retries were sent earlier than anything never sent (attempts == 0); among themselves they
    // keep the order they were first sent in (op ids grow).
    auto at = offline_queue_.begin();
    while (at != offline_queue_.end() && at->attempts > 0 && at->request.op < p.request.op)
        ++at;
    offline_queue_bytes_ += p.request.topic.size() + p.request.payload.size();
    offline_queue_.insert(at, std::move(p));
}

void engine::flush_offline_queue(action_list& out) {
    while (!offline_queue_.empty()) {
        pending_publish p = std::move(offline_queue_.front());
        offline_queue_.pop_front();
        offline_queue_bytes_ -= p.request.topic.size() + p.request.payload.size();
        publish_now(std::move(p), out);
    }
}

void engine::publish_now(pending_publish p, action_list& out) {
    p.request.op = next_op_++;
    ++p.attempts;
    p.sent_on_connection = stats_.upstream_connects;
    ++stats_.publishes;
    if (p.request.qos == 0) {
        out.push_back(std::move(p.request));
        return;
    }
    out.push_back(p.request);
    const op_id op = p.request.op;
    pending_publishes_.emplace(op, std::move(p));
}

void engine::upstream_published(op_id op, std::optional<errc> error, std::string_view message,
                                action_list& out) {
    begin_event();
    const auto it = pending_publishes_.find(op);
    if (it == pending_publishes_.end()) return;
    pending_publish p = std::move(it->second);
    pending_publishes_.erase(it);
    if (error == errc::unavailable && p.attempts < max_publish_attempts) {
        // The connection went away before the broker confirmed: send it again on the next one.
        // (For QoS 2 this can publish twice if the broker did receive it; a persistent session
        // avoids that.) Paho reports such failures before the loss of the connection itself, so
        // a failure on what is still the current connection waits for the reconnect too;
        // tick() sends it anyway if no loss follows.
        if (upstream_up_ && p.sent_on_connection != stats_.upstream_connects) {
            publish_now(std::move(p), out);
        } else {
            queue_retry(std::move(p));
        }
        return;
    }
    session* s = find_session_by_key(p.owner);
    if (s == nullptr || p.reply_to.empty()) return;
    if (p.request.qos == 2) {
        if (publish_memory* m = s->recall_publish(p.reply_to.json)) {
            m->pending = false;
            m->error = error;
            m->message = std::string(message);
            for (; m->extra_acks > 0; --m->extra_acks)
                answer_publish(*s, p.reply_to, error, message, out);
        }
    }
    answer_publish(*s, p.reply_to, error, message, out);
}

// ---------------------------------------------------------------- other requests

void engine::handle(session& s, ack_request& r, action_list& out) {
    session_sink sink(*this, s, out);
    const auto waited = s.deliveries().ack(r.delivery_id, env_.steady_ms(), sink);
    if (!waited) return;
    std::size_t bucket = 0;
    while (bucket + 1 < ack_latency_buckets && *waited > ack_latency_bounds_ms[bucket])
        ++bucket;
    ++stats_.ack_latency[bucket];
    stats_.ack_latency_sum_ms += *waited;
}

void engine::handle(session& s, ping_request& r, action_list& out) {
    send(s, out_kind::pong, encode_pong(env_.wall_ms(), r.id), out);
}

// ---------------------------------------------------------------- broker → clients

void engine::upstream_message(const broker_message& m, action_list& out) {
    begin_event();
    ++stats_.messages_in;
    const bool by_id = !m.subscription_ids.empty();
    const bool v3_replay = !by_id && config_.mqtt_version < 5 && m.retained;
    const std::uint64_t serial = ++fanout_serial_;
    targets_.clear();
    routed_filters_.clear();

    // Which upstream filters this copy of the message is for.
    if (by_id) {
        for (const std::uint32_t id : m.subscription_ids) {
            const auto it = filters_by_subscription_id_.find(id);
            if (it != filters_by_subscription_id_.end()) routed_filters_.push_back(it->second);
        }
    } else {
        registry_.match(m.topic, [&](upstream_filter& f) { routed_filters_.push_back(&f); });
    }

    // `via` is the filter through which `who` was reached.
    const auto consider = [&](session* who, const upstream_filter* via) {
        if (who->last_fanout == serial) return;
        who->last_fanout = serial;
        const auto& subs = who->subscriptions();
        session::subscription_ref best =
            subs.size() == 1 ? &*subs.begin() : who->best_match(m.topic, /*confirmed_only=*/by_id);
        if (best == nullptr) best = &*subs.find(via->filter);
        if (by_id && subs.size() > 1 &&
            std::find(routed_filters_.begin(), routed_filters_.end(), best->second.upstream) ==
                routed_filters_.end()) {
            return;  // another copy of this message, tagged with the best filter, reaches it
        }
        targets_.push_back({who, std::min(m.qos, best->second.qos), &best->second.options});
    };

    const std::int64_t now = env_.steady_ms();
    for (upstream_filter* f : routed_filters_) {
        if (v3_replay) {
            if (f->replay_until_ms < now) continue;
            for (session* who : f->replay_targets)
                consider(who, f);
        } else {
            for (const auto& sub : f->subscribers)
                consider(sub.who, f);
        }
    }
    if (config_.mqtt_version >= 5 && m.retained) retained_.put(m.topic, m.payload, m.qos);

    const std::int64_t timestamp = env_.wall_ms();
    auto body =
        std::make_shared<const message_body>("message", m.topic, m.payload, m.retained, timestamp,
                                             config_.decode.max_depth, m.duplicate);
    if (routed_filters_.empty() && parked_until_ms_ != 0 && m.qos > 0 && !m.retained &&
        parked_.size() < config_.restart_hold_messages) {
        // Queued by the broker for a filter of the bridge's previous run: hold it for the
        // clients that subscribe again shortly (see restart_hold_ms).
        parked_.push_back(parked_message{body, m.topic, m.qos});
        return;
    }
    std::shared_ptr<const message_body> control_body;
    for (const auto& t : targets_) {
        if (t.who->is_device() && m.topic == t.who->control_topic()) {
            if (!control_body) {
                control_body = std::make_shared<const message_body>(
                    "control", m.topic, m.payload, m.retained, timestamp, config_.decode.max_depth,
                    m.duplicate);
            }
            deliver(*t.who, control_body, t.qos, *t.options, out);
        } else {
            deliver(*t.who, body, t.qos, *t.options, out);
        }
    }
}

void engine::deliver_parked(session& s, std::string_view filter, const client_subscription& sub,
                            action_list& out) {
    for (const auto& p : parked_) {
        if (topic::matches(filter, p.topic))
            deliver(s, p.body, std::min(sub.qos, p.qos), sub.options, out);
    }
}

void engine::deliver(session& s, const std::shared_ptr<const message_body>& body, std::uint8_t qos,
                     const subscription_options& options, action_list& out) {
    const std::int64_t now = env_.steady_ms();
    const bool congested = s.budget().congested();
    if (qos == 0 && (options.max_rate > 0 || congested)) {
        // QoS 0 may wait: the newest message per topic is kept, an older one replaced.
        if (const auto waiting = s.held.find(body->topic()); waiting != s.held.end()) {
            // One is already held for this topic: the new one takes its place (and its turn),
            // so an older value is never sent after a newer one.
            s.held_bytes += body->size();
            s.held_bytes -= waiting->second.body->size();
            waiting->second.body = body;
            waiting->second.options = options;
            ++stats_.conflated;
            ++s.counters().conflated;
            if (!congested && waiting->second.due_ms <= now) release_held(s, now, out);
            return;
        }
        std::int64_t due = 0;
        if (options.max_rate > 0) {
            const auto last = s.last_sent_by_topic.find(body->topic());
            const auto interval = static_cast<std::int64_t>(1000.0 / options.max_rate);
            if (last != s.last_sent_by_topic.end() && now - last->second < interval)
                due = last->second + interval;
        }
        // Held messages are bounded too: one per topic, and no more bytes than the budget.
        const bool no_room_to_hold = s.held_bytes + body->size() > config_.max_queued_bytes;
        if ((congested && !options.conflate && options.max_rate <= 0) ||
            ((due != 0 || congested) && no_room_to_hold)) {
            ++stats_.dropped;
            ++s.counters().dropped;
            return;
        }
        if (due != 0 || congested) {
            s.held.emplace(body->topic(), held_message{body, options, due});
            s.held_bytes += body->size();
            return;
        }
    }
    if (qos == 0 && options.max_rate > 0) s.last_sent_by_topic[body->topic()] = now;
    ++stats_.deliveries;
    ++s.counters().messages_delivered;
    session_sink sink(*this, s, out);
    s.deliveries().push(body, qos,
                        delivery_style{options.binary, options.batch_max, options.batch_delay_ms},
                        now, sink);
    if (qos > 0) bound_backlog(s, out);
}

void engine::release_held(session& s, std::int64_t now, action_list& out) {
    session_sink sink(*this, s, out);
    for (auto it = s.held.begin(); it != s.held.end() && !s.budget().congested();) {
        if (it->second.due_ms > now) {
            ++it;
            continue;
        }
        const held_message h = std::move(it->second);
        it = s.held.erase(it);
        s.held_bytes -= h.body->size();
        if (h.options.max_rate > 0) s.last_sent_by_topic[h.body->topic()] = now;
        ++stats_.deliveries;
        ++s.counters().messages_delivered;
        s.deliveries().push(
            h.body, 0,
            delivery_style{h.options.binary, h.options.batch_max, h.options.batch_delay_ms}, now,
            sink);
    }
}

void engine::send_delivery(session& s, const delivery& d, bool dup, action_list& out) {
    if (dup) ++stats_.redeliveries;
    delivery_fields fields;
    fields.qos = d.qos;
    fields.msgid = d.msgid;
    fields.seq = s.resumable() ? d.seq : 0;
    fields.dup = dup;
    if (d.style.binary) {
        send(s, out_kind::message, make_frame(d.body->finish_binary(fields)), out, /*binary=*/true);
        return;
    }
    if (d.style.batch_max > 0) {
        // Gathered into one `batch` frame: sent when full (in messages or bytes), or by tick()
        // when the first is due.
        if (s.batch.empty()) {
            s.batch_max = d.style.batch_max;
            s.batch_due_ms = env_.steady_ms() + d.style.batch_delay_ms;
        }
        s.batch.push_back(d.body->finish(fields));
        s.batch_bytes += s.batch.back().size();
        s.batch_max = std::min(s.batch_max, d.style.batch_max);
        if (s.batch.size() >= s.batch_max || s.batch_bytes >= max_batch_bytes ||
            d.style.batch_delay_ms == 0) {
            flush_batch(s, out);
        }
        return;
    }
    if (d.qos == 0 && !s.resumable() && !dup) {
        // Nothing of its own in the frame: every such recipient shares one encoding.
        send(s, out_kind::message, d.body->shared_qos0(), out);
        return;
    }
    send(s, out_kind::message, make_frame(d.body->finish(fields)), out);
}

void engine::flush_batch(session& s, action_list& out) {
    if (s.batch.empty()) return;
    frame_ptr frame = make_frame(encode_batch(s.batch));
    s.batch.clear();
    s.batch_bytes = 0;
    s.batch_due_ms = 0;
    send(s, out_kind::batch, std::move(frame), out);
}

// ---------------------------------------------------------------- upstream state

void engine::upstream_connected(bool session_present, action_list& out) {
    begin_event();
    upstream_up_ = true;
    ++stats_.upstream_connects;
    const bool kept = session_present && config_.persistent_session;
    if (kept && !connected_before_) {
        // A restart: the broker may hold messages for filters nobody has asked for yet.
        parked_until_ms_ = env_.steady_ms() + config_.restart_hold_ms;
    }
    connected_before_ = true;
    out.push_back(log_line{log_level::info, std::string("upstream connected (") +
                                                (kept ? "session kept" : "new session") + "), " +
                                                std::to_string(registry_.filter_count()) +
                                                " filters held"});
    if (!kept) {
        // The broker knows none of our filters. Subscribe all of them again; the broker replays
        // their retained messages to every client (as it would to direct clients reconnecting),
        // which also refills the retained store.
        retained_.clear();
        released_while_down_.clear();
    }
    const bool v5 = config_.mqtt_version >= 5;
    registry_.for_each([&](upstream_filter& entry) {
        if (kept && entry.confirmed) return;  // the broker still has it
        entry.confirmed = false;
        std::vector<std::uint64_t> everyone;  // 3.1.1: the broker's replay is for all of them
        if (!v5) {
            for (const auto& sub : entry.subscribers)
                everyone.push_back(sub.who->key());
        }
        const op_id op = subscribe_upstream_now(entry, true, std::move(everyone), out);
        for (const auto& sub : entry.subscribers) {
            auto it = sub.who->subscriptions().find(entry.filter);
            if (it != sub.who->subscriptions().end() && it->second.pending_suback)
                it->second.waiting_op = op;
        }
    });
    for (const auto& filter : released_while_down_)
        out.push_back(unsubscribe_upstream{next_op_++, filter});
    released_while_down_.clear();
    flush_offline_queue(out);
    broadcast(make_frame(encode_upstream_status(true, env_.wall_ms())), out);
}

void engine::upstream_lost(std::string_view reason, action_list& out) {
    begin_event();
    if (!upstream_up_) return;
    upstream_up_ = false;
    out.push_back(log_line{log_level::warn, "upstream connection lost: " + std::string(reason)});
    pending_subscribes_.clear();  // upstream_connected() subscribes again what is needed
    const bool keep = config_.persistent_session;
    registry_.for_each([keep](upstream_filter& entry) {
        if (!keep) entry.confirmed = false;
        entry.replay_targets.clear();
        entry.replay_until_ms = 0;
    });
    open_replay_windows_.clear();
    broadcast(make_frame(encode_upstream_status(false, env_.wall_ms())), out);
}

void engine::tick(action_list& out) {
    begin_event();
    const std::int64_t now = env_.steady_ms();

    // Sessions: resend unacknowledged deliveries; end the ones nobody resumed in time.
    std::vector<session*> expired;
    for (auto& [key, s] : sessions_) {
        if (s->connection() == 0) {
            if (s->detached_until_ms() <= now) expired.push_back(s.get());
        } else if (s->closing) {
            continue;
        } else if (s->auth_deadline_ms != 0 && s->auth_deadline_ms <= now) {
            s->auth_deadline_ms = 0;
            s->closing = true;
            out.push_back(
                close_client{s->connection(), close_code::auth_timeout, "Authentication timeout"});
        } else if (now - s->last_alive_ms >= config_.idle_timeout_ms) {
            s->closing = true;
            ++stats_.heartbeat_timeouts;
            out.push_back(
                close_client{s->connection(), close_code::heartbeat_timeout, "Heartbeat timeout"});
        } else if (slow_consumer(*s, now)) {
            ++stats_.slow_consumers;
            s->closing = true;
            out.push_back(
                close_client{s->connection(), close_code::slow_consumer, "Slow consumer"});
        } else {
            if (s->authenticated()) check_token(*s, env_.wall_ms(), out);
            if (!s->closing) tick_connected(*s, now, out);
        }
    }
    for (session* s : expired)
        end_session(*s, out);

    // Forget addresses and users whose allowance of failed attempts has filled up again, and
    // device nonces that are out of the replay window.
    auth_limits_.forget_idle(now);
    replays_.expire(env_.wall_ms());

    // Retries held for a connection loss that Paho then did not report (see upstream_published).
    if (upstream_up_) flush_offline_queue(out);

    if (parked_until_ms_ != 0 && parked_until_ms_ <= now) {
        parked_.clear();
        parked_until_ms_ = 0;
    }

    auto& windows = open_replay_windows_;
    windows.erase(std::remove_if(windows.begin(), windows.end(),
                                 [&](const std::string& filter) {
                                     upstream_filter* entry = registry_.find(filter);
                                     if (entry == nullptr) return true;
                                     if (entry->replay_until_ms > now) return false;
                                     entry->replay_targets.clear();
                                     entry->replay_until_ms = 0;
                                     return true;
                                 }),
                  windows.end());
}

void engine::set_security(std::shared_ptr<const security_policy> policy, action_list& out) {
    begin_event();
    policy_ = std::move(policy);
    std::vector<session*> revoked_detached;
    for (auto& [key, s] : sessions_) {
        if (!s->authenticated()) continue;
        if (auto why = policy_->revoked.revokes(s->client_id(), s->username(), s->token_id)) {
            ++stats_.revoked;
            audit(*s, "revoked", {}, *why, out);
            if (s->connection() == 0) {
                revoked_detached.push_back(s.get());
            } else if (!s->closing) {
                s->closing = true;
                out.push_back(
                    close_client{s->connection(), close_code::auth_failed, "Credentials revoked"});
            }
            continue;
        }
        recheck_subscriptions(*s, "after an ACL reload", out);
    }
    for (session* s : revoked_detached)
        end_session(*s, out);
    out.push_back(log_line{log_level::info, "security policy reloaded"});
}

void engine::recheck_subscriptions(session& s, std::string_view why, action_list& out) {
    std::vector<std::pair<std::string, std::string>> refused;  // filter, reason
    for (const auto& [filter, sub] : s.subscriptions()) {
        const acl_decision d =
            policy_->rules.check_subscribe(s.client_id(), s.username(), filter, s.grant());
        if (!d.allowed) refused.emplace_back(filter, d.reason);
    }
    for (const auto& [filter, reason] : refused) {
        unsubscribe(s, filter, out);
        audit(s, "denied", filter, std::string(why) + ": " + reason, out);
        send_error(s, errc::forbidden, "subscription removed " + std::string(why) + ": " + reason,
                   {}, out, filter);
    }
}

void engine::take_credentials(session& s, identity& who) {
    s.set_acl_identity(std::move(who.username), std::move(who.grant));
    s.token_expires_ms = who.expires_at ? *who.expires_at * 1000 : 0;
    s.token_id = std::move(who.token_id);
    s.token_expiry_told = false;
}

void engine::check_token(session& s, std::int64_t wall_now, action_list& out) {
    if (s.token_expires_ms == 0) return;
    if (wall_now >= s.token_expires_ms) {
        ++stats_.token_expiries;
        s.closing = true;
        out.push_back(close_client{s.connection(), close_code::token_expired, "Token expired"});
        return;
    }
    if (!s.token_expiry_told && wall_now >= s.token_expires_ms - config_.token_expiry_warning_ms) {
        s.token_expiry_told = true;
        send(s, out_kind::token_expiring,
             make_frame(encode_token_expiring(s.token_expires_ms - wall_now, s.token_expires_ms)),
             out);
    }
}

void engine::handle(session& s, refresh_request& r, action_list& out) {
    // The new token must be for the same identity: the client id (a JWT's sub) and the user.
    auth_request same;
    same.client_id = s.client_id();
    same.token = std::move(r.token);
    auto checked = policy_->auth.authenticate(&same, s.handshake(), env_.wall_ms() / 1000);
    if (auto* refusal = std::get_if<auth_refusal>(&checked)) {
        ++stats_.auth_failures;
        auth_limits_.failed(address_without_port(s.remote_address()), {}, env_.steady_ms());
        audit(s, "refresh_failure", {}, refusal->reason, out);
        send_error(s, errc::forbidden, "the new token was refused", r.id, out);
        return;
    }
    identity& who = std::get<identity>(checked);
    if (who.username != s.username()) {
        audit(s, "refresh_failure", {}, "the new token is for user '" + who.username + "'", out);
        send_error(s, errc::forbidden, "the new token is for another identity", r.id, out);
        return;
    }
    if (auto why = policy_->revoked.revokes(who.client_id, who.username, who.token_id)) {
        audit(s, "refresh_failure", {}, *why, out);
        send_error(s, errc::forbidden, "the new token was refused", r.id, out);
        return;
    }
    ++stats_.token_refreshes;
    audit(s, "token_refresh", {}, who.method, out);
    take_credentials(s, who);
    const auto expires =
        s.token_expires_ms != 0 ? std::optional<std::int64_t>(s.token_expires_ms) : std::nullopt;
    send(s, out_kind::refresh_response, make_frame(encode_refresh_response(expires, r.id)), out);
    // The new token's ACL claims apply at once.
    recheck_subscriptions(s, "after a token refresh", out);
}

void engine::tick_connected(session& s, std::int64_t now, action_list& out) {
    if (!s.held.empty()) release_held(s, now, out);
    if (!s.batch.empty() && s.batch_due_ms <= now) flush_batch(s, out);
    if (now - s.last_alive_ms >= config_.ping_interval_ms &&
        now - s.last_ping_ms >= config_.ping_interval_ms) {
        s.last_ping_ms = now;
        out.push_back(ping_client{s.connection()});
    }
    if (s.app_pings && now - s.last_sent_ms >= config_.ping_interval_ms) {
        // A client that cannot see WebSocket pings (a browser) learns that the bridge is alive.
        send(s, out_kind::ping, make_frame(encode_app_ping(env_.wall_ms())), out);
    }
    const auto due = s.deliveries().next_resend();
    if (due && *due <= now) {
        measure(s);  // which earlier copies have left (send_budget positions)
        session_sink sink(*this, s, out);
        s.deliveries().resend_due(now, sink);
    }
}

bool engine::slow_consumer(session& s, std::int64_t now) {
    // Over budget: the socket's buffer, or the QoS 1/2 backlog.
    send_budget& budget = s.budget();
    const bool over =
        budget.congested() || s.deliveries().backlog_bytes() > config_.max_queued_bytes;
    if (!over) {
        budget.set_over_since(0);
        return false;
    }
    if (budget.over_since_ms() == 0) budget.set_over_since(now);
    if (now - budget.over_since_ms() < config_.slow_consumer_timeout_ms) return false;
    // A client waiting only for conflatable QoS 0 messages is not closed: it gets the newest of
    // each topic once it drains. Anything else (QoS 1/2, or answers to its own requests) that it
    // has not taken for this long closes it.
    const bool only_conflatable = s.deliveries().backlog() == 0 && !s.held.empty();
    return !only_conflatable;
}

void engine::shutdown(action_list& out) {
    begin_event();
    shutting_down_ = true;
    for (auto& [id, s] : connections_) {
        out.push_back(close_client{id, close_code::going_away, "Bridge shutting down"});
    }
}

std::vector<session_summary> engine::sessions(std::size_t limit) const {
    std::vector<session_summary> all;
    all.reserve(sessions_.size());
    for (const auto& [key, s] : sessions_) {
        if (!s->authenticated()) continue;
        session_summary x;
        x.client_id = s->client_id();
        x.remote_address = s->remote_address();
        x.connected = s->connection() != 0;
        x.subscriptions = s->subscriptions().size();
        x.counters = s->counters();
        x.inflight = s->deliveries().inflight();
        x.backlog = s->deliveries().backlog();
        x.held = s->held.size();
        x.congested = s->budget().congested();
        all.push_back(std::move(x));
    }
    const auto losses = [](const session_summary& x) {
        return x.counters.conflated + x.counters.dropped;
    };
    std::sort(all.begin(), all.end(),
              [&](const auto& a, const auto& b) { return losses(a) > losses(b); });
    if (all.size() > limit) all.resize(limit);
    return all;
}

engine_stats engine::stats() const {
    engine_stats s = stats_;
    s.connections = connections_.size();
    s.sessions = sessions_.size();
    s.filters = registry_.filter_count();
    s.upstream_up = upstream_up_;
    s.offline_queued = offline_queue_.size();
    s.retained_cached = retained_.size();
    s.parked = parked_.size();
    s.congested = congested_.size();
    for (const auto& [key, sess] : sessions_) {
        s.inflight += sess->deliveries().inflight();
        s.backlog += sess->deliveries().backlog();
        s.backlog_bytes += sess->deliveries().backlog_bytes();
        s.held += sess->held.size();
        if (sess->connection() != 0) s.queued_bytes += sess->budget().estimate();
    }
    return s;
}

}  // namespace mqttws
