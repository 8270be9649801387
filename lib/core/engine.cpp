#include "core/engine.hpp"

#include <algorithm>
#include <utility>

#include "core/replies.hpp"

namespace mqttws {
namespace {

// The msgid of a request, if it has one (acks and batches do not: their entries do).
const msg_id& request_id(const client_request& request) {
    static const msg_id none;
    return std::visit(
        [](const auto& r) -> const msg_id& {
            using kind = std::decay_t<decltype(r)>;
            if constexpr (std::is_same_v<kind, ack_request>) {
                return none;
            } else if constexpr (std::is_same_v<kind, command_result_request>) {
                return r.msgid;
            } else {
                return r.id;
            }
        },
        request);
}

static_assert(std::variant_size_v<client_request> == static_cast<std::size_t>(in_kind::binary),
              "in_kind lists the client_request alternatives first, in order");

}  // namespace

engine::engine(engine_config config, platform& env, std::shared_ptr<const security_policy> policy,
               bridge_state shared)
    : ctx_(std::move(config), env, std::move(policy)),
      decoder_(ctx_.config.decode),
      sessions_(shared.detached ? std::move(shared.detached) : make_detached_sessions(ctx_.config),
                ctx_.config.shard),
      pacer_(ctx_),
      gate_(
          ctx_, pacer_,
          shared.auth_failures ? std::move(shared.auth_failures) : make_auth_limiter(ctx_.config)),
      subscriptions_(ctx_, sessions_, pacer_),
      relay_(ctx_, sessions_, pacer_),
      presence_(ctx_, relay_),
      commands_(ctx_, sessions_, pacer_, relay_, presence_,
                shared.commands ? std::move(shared.commands) : make_idempotency_store(ctx_.config)),
      router_(ctx_, subscriptions_, pacer_, commands_) {}

engine::~engine() = default;

// ---------------------------------------------------------------- connection events

void engine::client_opened(connection_id id, std::string remote_address,
                           handshake_credentials handshake, action_list& out) {
    begin_event();
    session& s = sessions_.open(id, std::move(remote_address), ctx_.config.outbox);
    s.live().last_alive_ms = ctx_.env.steady_ms();
    gate_.opened(s, std::move(handshake), out);
}

void engine::client_text(connection_id id, std::string_view frame, action_list& out) {
    begin_event();
    if (session* s = sessions_.by_connection(id))
        read_request(*s, decoder_.decode(frame), frame, /*binary=*/false, out);
    end_event(out);
}

void engine::client_binary(connection_id id, std::string_view frame, action_list& out) {
    client_decoded(id, decoder_.decode_binary_for_engine(frame), out);
}

void engine::client_decoded(connection_id id, decoded_frame frame, action_list& out) {
    begin_event();
    if (session* s = sessions_.by_connection(id))
        read_request(*s, std::move(frame.result), frame.signable_text, frame.binary, out);
    end_event(out);
}

void engine::read_request(session& s, std::variant<client_request, decode_failure> decoded,
                          std::string_view frame, bool binary, action_list& out) {
    ++s.counters().frames_in;
    s.live().last_alive_ms = ctx_.env.steady_ms();
    auto* request = std::get_if<client_request>(&decoded);
    const in_kind kind = binary ? in_kind::binary
                         : request != nullptr
                             ? static_cast<in_kind>(request->index())  // in_kind follows its order
                             : in_kind::invalid;
    ++ctx_.stats.frames_in[static_cast<std::size_t>(kind)];
    if (request == nullptr) {
        const auto& failure = std::get<decode_failure>(decoded);
        pacer_.send_error(s, failure.code, failure.message, failure.id, out);
        return;
    }
    if (!std::holds_alternative<auth_request>(*request) &&
        !gate_.ensure_authenticated(s, request_id(*request), out)) {
        return;
    }
    if (relay_.upstream_congested() && publishes(*request, binary)) relay_.pause_reading_of(s, out);
    if (!signature_accepted(s, frame, binary, *request, out)) return;
    std::visit([&](auto& r) { handle(s, r, out); }, *request);
}

bool engine::signature_accepted(session& s, std::string_view frame, bool binary,
                                const client_request& request, action_list& out) {
    if (binary) {
        if (gate_.binary_allowed(s)) return true;
        const auto& publish = std::get<publish_request>(request);  // all a binary frame can be
        ++ctx_.stats.signatures_refused;
        relay_.refuse(s, publish.qos, publish.id, errc::bad_signature,
                      "this device must sign its frames; binary frames cannot be signed", out);
        return false;
    }
    const signature_fields* proof = signature_proof(request);
    if (proof == nullptr) return true;  // other frames are not signed
    const auto refusal = gate_.check_signature(s, frame, *proof);
    if (!refusal) return true;
    std::uint8_t qos = 0;  // how the refusal is answered: as the request would have been
    if (const auto* p = std::get_if<publish_request>(&request)) {
        qos = p->qos;
    } else if (const auto* d = std::get_if<device_report_request>(&request)) {
        qos = d->id.empty() ? 0 : 1;  // a report with a msgid is acked
    }
    const bool replayed = refusal->code == errc::replayed;
    ++(replayed ? ctx_.stats.replays_refused : ctx_.stats.signatures_refused);
    ctx_.audit(s, replayed ? "replayed" : "bad_signature", {}, refusal->message, out);
    relay_.refuse(s, qos, request_id(request), refusal->code, refusal->message, out);
    return false;
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
    session* s = sessions_.by_connection(id);
    if (s == nullptr) return;  // e.g. a connection whose session was taken over
    pacer_.forget(*s);
    // Only the client's own clean close drops its last will (the bridge's closes do not).
    const bool client_clean = by_peer && (code == 1000 || code == 1005);
    const std::int64_t now = ctx_.env.steady_ms();
    presence_.connection_ended(*s, client_clean, now);
    if (clean || !s->authenticated() || !s->resumable() || ctx_.config.resume_window_ms <= 0) {
        using why = presence_keeper::end_reason;
        end_session(*s,
                    client_clean                                 ? why::closed
                    : ctx_.shutting_down                         ? why::bridge_stopped
                    : bridge_closed_for(close_code::auth_failed) ? why::revoked
                                                                 : why::timeout,
                    out);
    } else {
        const auto over_limit = sessions_.detach(*s, now + ctx_.config.resume_window_ms);
        presence_.tick(*s, now, out);  // a will without delay goes out now
        // Past --max-detached-sessions: the sessions that waited longest in the bridge end.
        for (const detached_sessions::entry& oldest : over_limit) {
            if (oldest.shard == ctx_.config.shard) {
                end_detached(oldest, out);
            } else {
                out.push_back(end_detached_session{oldest});
            }
        }
    }
    end_event(out);
}

void engine::from_peer_shard(const action& request, action_list& out) {
    begin_event();
    if (const auto* end = std::get_if<end_detached_session>(&request)) {
        end_detached(end->session, out);
    } else if (const auto* adopt = std::get_if<adopt_command>(&request)) {
        commands_.adopt(*adopt, out);
    } else if (const auto* tell = std::get_if<tell_command_owner>(&request)) {
        commands_.tell_owner(*tell, out);
    }
    end_event(out);
}

void engine::end_detached(const detached_sessions::entry& e, action_list& out) {
    session* s = sessions_.by_key(static_cast<session_key>(e.key));
    // Not when it was resumed since (and maybe detached again: a later entry).
    if (s == nullptr || s->connection() != 0 || s->detached_until_ms() != e.until_ms) return;
    ++ctx_.stats.sessions_evicted;
    end_session(*s, presence_keeper::end_reason::timeout, out);
}

void engine::client_alive(connection_id id) {
    begin_event();
    if (session* s = sessions_.by_connection(id)) s->live().last_alive_ms = ctx_.env.steady_ms();
}

bool engine::client_pinged(connection_id id, std::size_t payload_bytes, action_list& out) {
    begin_event();
    session* s = sessions_.by_connection(id);
    if (s == nullptr) return false;
    s->live().last_alive_ms = ctx_.env.steady_ms();
    return pacer_.pong_owed(*s, payload_bytes, out);
}

void engine::poll_congested(action_list& out) {
    begin_event();
    pacer_.poll_congested(out);
}

void engine::end_session(session& s, presence_keeper::end_reason why, action_list& out) {
    presence_.session_ended(s, why, out);
    subscriptions_.unsubscribe_all(s, out);
    gate_.forget_session_token(s);
    pacer_.forget(s);
    sessions_.erase(s);
}

// ---------------------------------------------------------------- authentication and resume

void engine::handle(session& s, auth_request& r, action_list& out) {
    if (s.authenticated()) {
        pacer_.send_error(s, errc::bad_request, "already authenticated as '" + s.client_id() + "'",
                          r.id, out);
        return;
    }
    std::optional<identity> checked = gate_.check(s, r, out);
    if (!checked) return;
    if (!r.session.empty()) {
        if (session* old = gate_.session_for_token(r.session, checked->client_id);
            old != nullptr && old != &s) {
            resume(s, *old, r, std::move(*checked), out);
            return;
        }
        // Unknown, expired, or another client's: a new session (sessionPresent:false).
    }
    gate_.admit(s, std::move(*checked), r.is_device, out);
    if (!accept_will(s, r, out)) return;
    s.device().takes_commands = r.commands;
    if (r.resume && ctx_.config.resume_window_ms > 0)
        gate_.issue_session_token(s);
    else
        s.deliveries().keep_no_history();  // nothing to replay: it cannot be resumed
    s.live().app_pings = r.heartbeat;
    // The response goes first: frames caused by authenticating (a device's retained control
    // message, the upstream status) follow it.
    pacer_.send(s, out_kind::auth_response,
                encode_auth_response(s.client_id(), s.token(), false, false, ctx_.env.wall_ms(),
                                     r.id, r.heartbeat ? ctx_.config.flow.ping_interval_ms : 0),
                out);
    if (s.is_device()) {
        const acl_decision allowed = ctx_.security().rules.check_subscribe(
            s.client_id(), s.username(), s.control_topic(), s.grant());
        if (allowed.allowed) {
            // QoS 1 for a device that takes commands: its ack is the command's `delivered`.
            subscriptions_.subscribe(s, s.control_topic(), r.commands ? 1 : 0, {}, std::nullopt,
                                     out);
        } else {
            ctx_.audit(s, "denied", s.control_topic(), allowed.reason, out);
        }
        presence_.authenticated(s, out);
        commands_.device_online(s.client_id(), out);
    }
    if (!ctx_.upstream_up)
        pacer_.send(s, out_kind::status, encode_upstream_status(false, ctx_.env.wall_ms()), out);
}

void engine::resume(session& fresh, session& old, const auth_request& r, identity who,
                    action_list& out) {
    const connection_id conn = fresh.connection();
    const std::int64_t fresh_alive = fresh.live().last_alive_ms;
    pacer_.forget(fresh);
    pacer_.forget(old);
    sessions_.erase(fresh);  // it had only just been opened: nothing to keep
    if (old.connection() != 0) {
        // A half-open connection still holds the session: the new one takes over.
        out.push_back(close_client{old.connection(), close_code::session_taken_over,
                                   "Session taken over by a new connection"});
    }
    sessions_.attach(old, conn);       // a new connection: a new budget, whatever the old one's was
    gate_.take_credentials(old, who);  // the new token's expiry and claims are the session's
    presence_.resumed(old);            // its will stays, unpublished
    if (r.will) old.device().will = r.will;
    liveness& live = old.live();
    live.last_alive_ms = fresh_alive;
    live.app_pings = r.heartbeat;
    live.last_sent_ms = fresh_alive;
    ++ctx_.stats.resumes;

    const bool resumed = r.last_seq && old.deliveries().can_resume_from(*r.last_seq);
    if (!resumed) ++ctx_.stats.resumes_with_gap;
    pacer_.send(
        old, out_kind::auth_response,
        encode_auth_response(old.client_id(), old.token(), resumed, true, ctx_.env.wall_ms(), r.id,
                             r.heartbeat ? ctx_.config.flow.ping_interval_ms : 0,
                             old.deliveries().last_seq()),
        out);
    pacer_.reconnect(old, resumed ? r.last_seq : std::nullopt, out);
    // Something may be lost: give the client the current state of its topics again.
    if (!resumed) subscriptions_.resend_retained(old, out);
    if (!ctx_.upstream_up)
        pacer_.send(old, out_kind::status, encode_upstream_status(false, ctx_.env.wall_ms()), out);
}

void engine::handle(session& s, refresh_request& r, action_list& out) {
    // The new token's ACL claims apply at once.
    if (gate_.refresh(s, r, out)) subscriptions_.recheck(s, "after a token refresh", out);
}

// ---------------------------------------------------------------- other requests

void engine::handle(session& s, subscribe_request& r, action_list& out) {
    subscriptions_.handle(s, r, out);
}

void engine::handle(session& s, unsubscribe_request& r, action_list& out) {
    subscriptions_.handle(s, r, out);
}

void engine::handle(session& s, publish_request& r, action_list& out) {
    relay_.handle(s, r, out);
}

void engine::handle(session& s, batch_request& r, action_list& out) {
    relay_.handle(s, r, out);
}

void engine::handle(session& s, device_report_request& r, action_list& out) {
    relay_.handle(s, r, out);
}

void engine::handle(session& s, ack_request& r, action_list& out) {
    const auto acked = pacer_.ack(s, r.delivery_id, out);
    if (acked && !acked->command_id().empty()) commands_.delivered(s, acked->command_id(), out);
}

void engine::handle(session& s, command_request& r, action_list& out) {
    // The answers come on the bridge's response topic, subscribed with the first command (and,
    // like every held filter, again after a reconnect).
    subscriptions_.subscribe_own(commands_.response_topic(), out);
    commands_.handle(s, r, out);
}

void engine::handle(session& s, command_result_request& r, action_list& out) {
    commands_.handle(s, r, out);
}

bool engine::accept_will(session& s, const auth_request& r, action_list& out) {
    if (!r.will) return true;
    std::optional<std::string> problem;
    if (auto bad = topic::check_name(r.will->topic, ctx_.config.topic_limits)) {
        problem = bad->message;
    } else if (const acl_decision allowed = ctx_.security().rules.check_publish(
                   s.client_id(), s.username(), r.will->topic, s.grant());
               !allowed.allowed) {
        ++ctx_.stats.denied;
        ctx_.audit(s, "denied", r.will->topic, "last will: " + allowed.reason, out);
        problem = allowed.reason;
    }
    if (!problem) {
        s.device().will = r.will;
        return true;
    }
    pacer_.send_error(s, errc::forbidden, "last will refused: " + *problem, r.id, out);
    s.live().closing = true;
    out.push_back(close_client{s.connection(), close_code::auth_failed, "Last will refused"});
    return false;
}

void engine::handle(session& s, ping_request& r, action_list& out) {
    pacer_.send(s, out_kind::pong, encode_pong(ctx_.env.wall_ms(), r.id), out);
}

// ---------------------------------------------------------------- upstream events

void engine::upstream_connected(bool session_present, action_list& out) {
    begin_event();
    ctx_.upstream_up = true;
    ++ctx_.stats.upstream_connects;
    const bool kept = session_present && ctx_.config.broker.persistent_session;
    subscriptions_.upstream_connected(kept, !connected_before_, out);
    // The bridge's own subscription to every device's presence (for commands' offline check).
    if (!connected_before_) subscriptions_.subscribe_own(presence_.presence_filter(), out);
    connected_before_ = true;
    presence_.upstream_connected(out);
    relay_.flush(out);
    pacer_.broadcast(sessions_, out_kind::status,
                     make_frame(encode_upstream_status(true, ctx_.env.wall_ms())), out);
    end_event(out);
}

void engine::upstream_lost(std::string_view reason, action_list& out) {
    begin_event();
    if (!ctx_.upstream_up) return;
    ctx_.upstream_up = false;
    if (!ctx_.config.behind_hub)  // else the hub says it, once for the bridge
        out.push_back(log_line{log_level::warn, upstream_lost_line(reason)});
    subscriptions_.upstream_lost();
    pacer_.broadcast(sessions_, out_kind::status,
                     make_frame(encode_upstream_status(false, ctx_.env.wall_ms())), out);
}

void engine::upstream_message(const broker_message& m, action_list& out) {
    begin_event();
    ++ctx_.stats.messages_in;
    if (router_.route(m, m.subscription_ids, out)) own_message(m, out);
    end_event(out);
}

void engine::shard_message(const broker_message& m,
                           const std::vector<std::uint32_t>& subscription_ids, bool local,
                           action_list& out) {
    begin_event();
    // A local one is counted once, by the shard of its publisher (end_event).
    if (!local) ++ctx_.stats.messages_in;
    if (router_.route(m, subscription_ids, out)) own_message(m, out);
    end_event(out);
}

void engine::peer_presence(const std::string& device, bool online, action_list& out) {
    begin_event();
    presence_.peer_presence(device, online);
    if (online) commands_.device_online(device, out);  // commands waiting for it go out
    end_event(out);
}

void engine::end_event(action_list& out) {
    // Routing a looped-back message can publish again (a command's answer, a will): drain until
    // nothing is left, in order.
    for (std::size_t i = 0; i < ctx_.loopback.size(); ++i) {
        const broker_message m = std::move(ctx_.loopback[i]);
        ++ctx_.stats.messages_local;
        if (router_.route(m, {}, out)) own_message(m, out);
    }
    ctx_.loopback.clear();
}

void engine::own_message(const broker_message& m, action_list& out) {
    const std::string now_online = presence_.heard(m);
    if (!now_online.empty()) commands_.device_online(now_online, out);
    commands_.heard(m, out);
}

void engine::upstream_subscribed(op_id op, int granted, action_list& out) {
    begin_event();
    subscriptions_.upstream_subscribed(op, granted, out);
    // Retained messages the bridge's own subscriptions were given from the store.
    for (const auto& m : std::exchange(subscriptions_.own_retained(), {}))
        own_message(m, out);
    end_event(out);
}

void engine::upstream_published(op_id op, std::optional<errc> error, std::string_view message,
                                action_list& out) {
    begin_event();
    if (auto done = relay_.upstream_published(op, error, message, out))
        commands_.published(done->tag, done->error, done->message, out);
    end_event(out);
}

void engine::upstream_congestion(bool congested, action_list& out) {
    begin_event();
    relay_.upstream_congestion(congested, out);
}

// ---------------------------------------------------------------- time and lifecycle

void engine::tick(action_list& out) {
    begin_event();
    const std::int64_t now = ctx_.env.steady_ms();
    const std::int64_t wall = ctx_.env.wall_ms();
    const flow_config& flow = ctx_.config.flow;

    // Sessions: time out what is due; end the ones nobody resumed in time.
    std::vector<session*> expired;
    sessions_.for_each([&](session& s) {
        liveness& live = s.live();
        if (s.connection() == 0) {
            presence_.tick(s, now, out);  // a will whose delay is over
            if (s.detached_until_ms() <= now) expired.push_back(&s);
        } else if (live.closing) {
            return;
        } else if (live.auth_deadline_ms != 0 && live.auth_deadline_ms <= now) {
            live.auth_deadline_ms = 0;
            live.closing = true;
            out.push_back(
                close_client{s.connection(), close_code::auth_timeout, "Authentication timeout"});
        } else if (!live.reading_paused && now - live.last_alive_ms >= flow.idle_timeout_ms) {
            live.closing = true;
            ++ctx_.stats.heartbeat_timeouts;
            out.push_back(
                close_client{s.connection(), close_code::heartbeat_timeout, "Heartbeat timeout"});
        } else if (pacer_.slow_consumer(s, now)) {
            ++ctx_.stats.slow_consumers;
            live.closing = true;
            out.push_back(close_client{s.connection(), close_code::slow_consumer, "Slow consumer"});
        } else {
            if (s.authenticated()) gate_.check_token(s, wall, out);
            if (!live.closing) pacer_.tick(s, now, out);
        }
    });
    for (session* s : expired)
        end_session(*s, presence_keeper::end_reason::timeout, out);

    gate_.tick(now, wall);
    commands_.tick(now, out);
    // Retries held for a connection loss that Paho then did not report (upstream_published).
    if (ctx_.upstream_up) relay_.flush(out);
    subscriptions_.tick(now);
    end_event(out);
}

void engine::shutdown(action_list& out) {
    begin_event();
    ctx_.shutting_down = true;
    std::vector<session*> all;
    sessions_.for_each([&](session& s) { all.push_back(&s); });
    presence_.shutdown(all, out);  // its devices go offline, and the bridge says it stopped
    sessions_.for_each_connected([&](session& s) {
        out.push_back(close_client{s.connection(), close_code::going_away, "Bridge shutting down"});
    });
    end_event(out);
}

void engine::set_security(std::shared_ptr<const security_policy> policy, action_list& out) {
    begin_event();
    ctx_.policy = std::move(policy);
    std::vector<session*> revoked_detached;
    sessions_.for_each([&](session& s) {
        if (!s.authenticated()) return;
        if (auto why = gate_.revoked(s)) {
            ++ctx_.stats.revoked;
            ctx_.audit(s, "revoked", {}, *why, out);
            if (s.connection() == 0) {
                revoked_detached.push_back(&s);
            } else if (!s.live().closing) {
                s.live().closing = true;
                out.push_back(
                    close_client{s.connection(), close_code::auth_failed, "Credentials revoked"});
            }
            return;
        }
        subscriptions_.recheck(s, "after an ACL reload", out);
    });
    for (session* s : revoked_detached)
        end_session(*s, presence_keeper::end_reason::revoked, out);
    // Engine shards: the bridge says it once all have it (engine_shards::set_security).
    if (!ctx_.config.behind_hub)
        out.push_back(log_line{log_level::info, "security policy reloaded"});
    end_event(out);
}

// ---------------------------------------------------------------- state kept on disk

void engine::restore_state(std::string_view file, const std::vector<std::string>& lines,
                           action_list& out) {
    if (file == "presence.jsonl") presence_.restore(lines, out);
    if (file == "commands.jsonl") commands_.restore(lines, out);
}

}  // namespace mqttws
