#include "core/commands.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>

#include "core/replies.hpp"
#include "core/text.hpp"

namespace mqttws {
namespace {

constexpr const char* commands_file = "commands.jsonl";
constexpr std::size_t max_open_commands_per_device = 256;

// Steps a target goes through; a report of an earlier step after a later one is ignored.
int rank(command_state s) {
    switch (s) {
        case command_state::queued:
            return 0;
        case command_state::delivered:
            return 1;
        case command_state::in_progress:
            return 2;
        default:
            return 3;
    }
}

// What the broker delivers comes from anyone who may publish there: parse it strictly (valid
// UTF-8), and pass on text only when it is valid UTF-8 still (a \u escape can decode to a lone
// surrogate).
constexpr unsigned strict = rapidjson::kParseValidateEncodingFlag;

std::string compact(const rapidjson::Value& v) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    v.Accept(writer);
    return {buffer.GetString(), buffer.GetSize()};
}

std::string string_member(const rapidjson::Value& obj, const char* name) {
    const auto it = obj.FindMember(name);
    if (it == obj.MemberEnd() || !it->value.IsString()) return {};
    return {it->value.GetString(), it->value.GetStringLength()};
}

// The index in engine_stats::command_outcomes.
std::size_t outcome_index(command_state s) {
    switch (s) {
        case command_state::succeeded:
            return 0;
        case command_state::failed:
            return 1;
        case command_state::rejected:
            return 2;
        default:
            return 3;
    }
}

}  // namespace

command_desk::command_desk(engine_context& ctx, session_directory& sessions, delivery_pacer& pacer,
                           publish_relay& relay, presence_keeper& presence,
                           std::shared_ptr<idempotency_store> remembered)
    : ctx_(ctx),
      sessions_(sessions),
      pacer_(pacer),
      relay_(relay),
      presence_(presence),
      response_topic_(
          fill_topic(ctx.config.devices.response_topic, "", ctx.config.devices.bridge_id)),
      remembered_(std::move(remembered)) {}

// ---------------------------------------------------------------- the sender's side

void command_desk::handle(session& s, command_request& r, action_list& out) {
    const std::int64_t now_wall = ctx_.env.wall_ms();
    const std::string sender = s.username().empty() ? s.client_id() : s.username();
    std::string key;
    if (!r.idempotency_key.empty()) {
        key = idempotency_store::key_of(sender, r.idempotency_key);
        if (const auto stored = remembered_->find(key, now_wall)) {
            answer_retry(s, key, r, *stored, out);
            return;
        }
    }
    if (commands_.size() >= ctx_.config.devices.max_commands) {
        pacer_.send_error(s, errc::unavailable,
                          "too many commands in flight on this bridge; try again later", r.id, out);
        return;
    }
    command c;
    c.number = next_number_++;
    c.owner_shard = ctx_.config.shard;
    c.owner = s.key();
    c.id = r.id;
    c.sender = s.client_id();
    c.remote_address = s.remote_address();
    c.idempotency_key = key;
    c.name = r.name;
    c.params_json = std::move(r.params_json);
    c.timeout_ms = r.timeout_ms;
    for (auto& device : r.targets) {
        target_run t;
        t.device = std::move(device);
        c.targets.push_back(std::move(t));
    }
    if (!key.empty()) {
        // Another shard may have taken the same key since find(): the first one runs it.
        if (const auto stored = remembered_->find_or_put(key, stored_form(c), now_wall)) {
            answer_retry(s, key, r, *stored, out);
            return;
        }
    }
    command& placed = commands_.emplace(c.number, std::move(c)).first->second;
    ctx_.stats.commands += placed.targets.size();

    const std::int64_t now = ctx_.env.steady_ms();
    const std::string& prefix = ctx_.config.device_topic_prefix;
    for (std::size_t i = 0; i < placed.targets.size(); ++i) {
        target_run& t = placed.targets[i];
        const std::string control_topic = prefix + "/" + t.device + "/control";
        const acl_decision allowed = ctx_.security().rules.check_publish(
            s.client_id(), s.username(), control_topic, s.grant());
        ctx_.audit(s, allowed.allowed ? "command" : "denied", control_topic,
                   placed.name + (allowed.allowed ? "" : ": " + allowed.reason), out);
        if (!allowed.allowed) {
            ++ctx_.stats.denied;
            advance(placed, i, command_state::rejected, {}, "forbidden", out);
            continue;
        }
        if (presence_.online(t.device) == false) {
            if (!r.queue) {
                advance(placed, i, command_state::rejected, {}, "device_offline", out);
                continue;
            }
            t.waiting = true;
            t.wait_until_ms = now + r.ttl_ms;
            t.reason = "device_offline";  // told with `queued`: it waits for the device
            tell(placed, i, out);
            continue;
        }
        send_to_device(placed, i, out);
        tell(placed, i, out);
    }
    remember(placed, out);
}

void command_desk::send_to_device(command& c, std::size_t i, action_list& out) {
    target_run& t = c.targets[i];
    t.waiting = false;
    t.reason.clear();
    t.correlation = ctx_.env.random_hex(8);
    by_correlation_[t.correlation] = target_ref{c.number, i};
    const std::uint64_t tag = next_tag_++;
    by_tag_[tag] = target_ref{c.number, i};
    t.sent_ms = ctx_.env.steady_ms();
    t.deadline_ms = t.sent_ms + c.timeout_ms;

    std::string envelope = R"({"type":"command","id":)";
    append_json_string(envelope, t.correlation);
    envelope += R"(,"name":)";
    append_json_string(envelope, c.name);
    envelope += R"(,"params":)";
    envelope += c.params_json;
    envelope += R"(,"timeoutMs":)";
    append_int(envelope, c.timeout_ms);
    envelope += R"(,"from":)";
    append_json_string(envelope, c.sender);
    envelope += R"(,"responseTopic":)";
    append_json_string(envelope, response_topic_);
    envelope += R"(,"correlationData":)";
    append_json_string(envelope, t.correlation);
    envelope += '}';
    relay_.publish_for_bridge(
        publish_upstream{0, ctx_.config.device_topic_prefix + "/" + t.device + "/control",
                         std::move(envelope), 1, false, response_topic_, t.correlation},
        tag, out);
}

void command_desk::published(std::uint64_t tag, std::optional<errc> error, std::string_view message,
                             action_list& out) {
    const auto it = by_tag_.find(tag);
    if (it == by_tag_.end()) return;
    const target_ref ref = it->second;
    by_tag_.erase(it);
    if (!error) return;  // `queued` was told when it was accepted
    const auto c = commands_.find(ref.command);
    if (c == commands_.end()) return;
    advance(c->second, ref.index, command_state::rejected, {},
            message.empty() ? "the broker refused it" : std::string(message), out);
}

void command_desk::heard(const broker_message& m, action_list& out) {
    if (m.topic != response_topic_) return;
    rapidjson::Document doc;
    doc.Parse<strict>(m.payload.data(), m.payload.size());
    if (doc.HasParseError() || !doc.IsObject()) return;
    const std::string correlation =
        !m.correlation_data.empty() ? m.correlation_data : string_member(doc, "correlationData");
    const auto ref = by_correlation_.find(correlation);
    if (ref == by_correlation_.end()) return;  // unknown, or long over
    const auto c = commands_.find(ref->second.command);
    if (c == commands_.end()) return;
    const auto state = command_state_named(string_member(doc, "status"));
    if (!state || *state == command_state::queued || *state == command_state::timed_out) return;
    std::string result;
    for (const char* field : {"result", "progress"}) {
        const auto it = doc.FindMember(field);
        if (it != doc.MemberEnd()) result = compact(it->value);
    }
    std::string reason = string_member(doc, "reason");
    if (!is_valid_utf8(result)) result.clear();
    if (!is_valid_utf8(reason)) reason.clear();
    advance(c->second, ref->second.index, *state, std::move(result), std::move(reason), out);
}

void command_desk::device_online(const std::string& device, action_list& out) {
    for (auto& [number, c] : commands_) {
        for (std::size_t i = 0; i < c.targets.size(); ++i) {
            const target_run& t = c.targets[i];
            if (t.waiting && !is_final(t.state) && t.device == device) send_to_device(c, i, out);
        }
    }
}

void command_desk::tick(std::int64_t now, action_list& out) {
    remembered_->expire(ctx_.env.wall_ms());
    for (auto it = commands_.begin(); it != commands_.end();) {
        command& c = it->second;
        for (std::size_t i = 0; i < c.targets.size(); ++i) {
            const target_run& t = c.targets[i];
            if (is_final(t.state)) continue;
            if (t.waiting && now >= t.wait_until_ms) {
                advance(c, i, command_state::rejected, {}, "device_offline", out);
            } else if (!t.waiting && !t.timed_out && now >= t.deadline_ms) {
                advance(c, i, command_state::timed_out, {}, {}, out);
            }
        }
        if (c.forget_at_ms != 0 && now >= c.forget_at_ms) {
            for (const auto& t : c.targets)
                by_correlation_.erase(t.correlation);
            // A retry from now on is answered from the store alone.
            if (!c.idempotency_key.empty())
                remembered_->finished(c.idempotency_key, ctx_.config.shard, c.number);
            it = commands_.erase(it);
        } else {
            ++it;
        }
    }
}

void command_desk::advance(command& c, std::size_t i, command_state state, std::string result_json,
                           std::string reason, action_list& out) {
    target_run& t = c.targets[i];
    if (is_final(t.state)) return;  // late duplicates of an outcome
    if (state == command_state::timed_out) {
        t.timed_out = true;
        ++ctx_.stats.command_outcomes[outcome_index(state)];
    } else if (!is_final(state) && rank(state) <= rank(t.state)) {
        return;
    } else {
        t.state = state;
        t.result_json = std::move(result_json);
        t.reason = std::move(reason);
        t.waiting = false;
        // After `timed_out` only an outcome is told: a late step is remembered, not repeated.
        if (t.timed_out && !is_final(state)) {
            remember(c, out);
            return;
        }
    }
    if (is_final(t.state)) {
        if (!t.timed_out) ++ctx_.stats.command_outcomes[outcome_index(t.state)];
        if (t.sent_ms != 0) {
            const std::int64_t took = ctx_.env.steady_ms() - t.sent_ms;
            std::size_t bucket = 0;
            while (bucket + 1 < ack_latency_buckets && took > ack_latency_bounds_ms[bucket])
                ++bucket;
            ++ctx_.stats.command_latency[bucket];
            ctx_.stats.command_latency_sum_ms += took;
        }
        out.push_back(audit_record{"command_" + std::string(name(t.state)), c.sender,
                                   c.remote_address, t.device, c.name});
    }
    tell(c, i, out);
    remember(c, out);  // a retry (or the next run) is told the current state, not a stale one
    summarize_if_done(c, out);
}

void command_desk::tell(const command& c, std::size_t i, action_list& out) {
    const target_run& t = c.targets[i];
    const bool timed_out_now = t.timed_out && !is_final(t.state);
    send_to_owner(c, out_kind::command_status,
                  encode_command_status(c.id, t.device,
                                        name(timed_out_now ? command_state::timed_out : t.state),
                                        ctx_.env.wall_ms(), t.result_json, t.reason),
                  out);
}

void command_desk::send_to_owner(const command& c, out_kind kind, std::string frame,
                                 action_list& out) {
    send_to(c.owner_shard, c.owner, kind, std::move(frame), out);
}

void command_desk::send_to(std::size_t owner_shard, session_key owner, out_kind kind,
                           std::string frame, action_list& out) {
    if (owner_shard != ctx_.config.shard) {
        out.push_back(tell_command_owner{owner_shard, static_cast<std::uint64_t>(owner),
                                         kind == out_kind::command_summary, std::move(frame)});
    } else if (session* s = sessions_.by_key(owner)) {
        pacer_.send(*s, kind, std::move(frame), out);
    }
}

void command_desk::tell_owner(const tell_command_owner& t, action_list& out) {
    if (session* s = sessions_.by_key(static_cast<session_key>(t.session))) {
        pacer_.send(*s, t.summary ? out_kind::command_summary : out_kind::command_status, t.frame,
                    out);
    }
}

void command_desk::summarize_if_done(command& c, action_list& out) {
    std::size_t counts[4] = {};
    bool all_final = true;
    for (const auto& t : c.targets) {
        if (is_final(t.state)) {
            ++counts[outcome_index(t.state)];
        } else if (t.timed_out) {
            ++counts[3];
            all_final = false;
        } else {
            return;  // still waiting for an outcome
        }
    }
    // Every target is over, or timed out: a late outcome is still told until one more timeout
    // has passed (counted from the first time it came to this).
    if (all_final) {
        c.forget_at_ms = ctx_.env.steady_ms();
    } else if (c.forget_at_ms == 0) {
        c.forget_at_ms = ctx_.env.steady_ms() + c.timeout_ms;
    }
    if (c.summarized || c.targets.size() < 2) return;
    c.summarized = true;
    send_to_owner(c, out_kind::command_summary,
                  encode_command_summary(c.id, c.targets.size(), counts, ctx_.env.wall_ms()), out);
}

remembered_command command_desk::stored_form(const command& c) const {
    remembered_command stored;
    stored.name = c.name;
    stored.created_wall_ms = ctx_.env.wall_ms();  // the store keeps the first one
    stored.shard = ctx_.config.shard;
    stored.number = c.number;
    stored.running = true;
    for (const auto& t : c.targets)
        stored.targets.push_back(remembered_target{t.device, t.state, t.result_json, t.reason});
    return stored;
}

void command_desk::remember(const command& c, action_list& out) {
    if (c.idempotency_key.empty()) return;
    std::string line = remembered_->update(c.idempotency_key, stored_form(c));
    if (!line.empty()) out.push_back(state_record{commands_file, std::move(line)});
}

void command_desk::answer_retry(session& s, const std::string& key, const command_request& r,
                                const remembered_command& stored, action_list& out) {
    ++ctx_.stats.command_retries;
    ctx_.audit(s, "command_retry", {}, r.name + " (idempotencyKey " + r.idempotency_key + ")", out);
    tell_stored(ctx_.config.shard, s.key(), r.id, stored, {}, out);
    if (!stored.running) return;
    // Still in flight: the retry takes over what is still to be told, wherever it runs.
    adopt_command adopt{stored.shard,
                        stored.number,
                        ctx_.config.shard,
                        static_cast<std::uint64_t>(s.key()),
                        r.id.json,
                        {},
                        key};
    for (const auto& t : stored.targets)
        adopt.told.push_back(t.state);
    if (stored.shard == ctx_.config.shard) {
        this->adopt(adopt, out);
    } else {
        out.push_back(std::move(adopt));
    }
}

void command_desk::tell_stored(std::size_t owner_shard, session_key owner, const msg_id& id,
                               const remembered_command& stored,
                               const std::vector<command_state>& told, action_list& out) {
    std::size_t counts[4] = {};
    bool over = true;
    bool told_over = !told.empty();
    for (std::size_t i = 0; i < stored.targets.size(); ++i) {
        const remembered_target& t = stored.targets[i];
        const bool was_told = i < told.size() && told[i] == t.state;
        if (!was_told) {
            send_to(owner_shard, owner, out_kind::command_status,
                    encode_command_status(id, t.device, name(t.state), ctx_.env.wall_ms(),
                                          t.result_json, t.reason),
                    out);
        }
        told_over = told_over && i < told.size() && is_final(told[i]);
        if (is_final(t.state)) {
            ++counts[outcome_index(t.state)];
        } else {
            over = false;
        }
    }
    if (over && !told_over && stored.targets.size() > 1) {
        send_to(owner_shard, owner, out_kind::command_summary,
                encode_command_summary(id, stored.targets.size(), counts, ctx_.env.wall_ms()), out);
    }
}

void command_desk::adopt(const adopt_command& a, action_list& out) {
    const auto it = commands_.find(a.number);
    if (it == commands_.end()) {
        // It ended and was forgotten after the retry read the store: what the retry has not
        // been told is in the store.
        const auto stored = remembered_->find(a.key, ctx_.env.wall_ms());
        if (stored && stored->shard == ctx_.config.shard && stored->number == a.number) {
            tell_stored(a.owner_shard, static_cast<session_key>(a.owner_session), msg_id{a.id_json},
                        *stored, a.told, out);
        }
        return;
    }
    command& c = it->second;
    c.owner_shard = a.owner_shard;
    c.owner = static_cast<session_key>(a.owner_session);
    c.id = msg_id{a.id_json};
    // What moved on since the retry read the store (on another shard) is told again.
    bool told_over = true;
    for (std::size_t i = 0; i < c.targets.size(); ++i) {
        const command_state told = i < a.told.size() ? a.told[i] : command_state::queued;
        if (told != c.targets[i].state) tell(c, i, out);
        told_over = told_over && is_final(told);
    }
    const bool over = std::all_of(c.targets.begin(), c.targets.end(),
                                  [](const target_run& t) { return is_final(t.state); });
    if (over && !told_over && c.summarized) {
        c.summarized = false;  // told to the old owner: the new one is told too
        summarize_if_done(c, out);
    }
}

void command_desk::restore(const std::vector<std::string>& lines, action_list& out) {
    if (ctx_.config.shard != 0) return;  // engine shards share the store: shard 0 reads it
    remembered_->restore(lines, ctx_.env.wall_ms());
    out.push_back(state_record{commands_file, remembered_->all_lines(), true});
}

// ---------------------------------------------------------------- the device's side

std::shared_ptr<const message_body> command_desk::command_for(session& s, const broker_message& m) {
    if (!s.is_device() || m.topic != s.control_topic()) return nullptr;
    rapidjson::Document doc;
    doc.Parse<strict>(m.payload.data(), m.payload.size());
    if (doc.HasParseError() || !doc.IsObject() || string_member(doc, "type") != "command")
        return nullptr;
    const std::string id = string_member(doc, "id");
    const std::string response_topic =
        !m.response_topic.empty() ? m.response_topic : string_member(doc, "responseTopic");
    if (id.empty() || response_topic.empty()) return nullptr;
    std::string correlation =
        !m.correlation_data.empty() ? m.correlation_data : string_member(doc, "correlationData");
    if (correlation.empty()) correlation = id;

    device_state& d = s.device();
    if (d.open_commands.count(id) == 0) {
        d.open_order.push_back(id);
        while (d.open_order.size() > max_open_commands_per_device) {
            d.open_commands.erase(d.open_order.front());
            d.open_order.pop_front();
        }
    }
    d.open_commands[id] = device_state::open_command{response_topic, std::move(correlation)};
    if (!d.takes_commands) return nullptr;  // as a `control` frame, in the seed's dialect

    std::string members;
    for (const auto& member : doc.GetObject()) {
        const std::string_view key(member.name.GetString(), member.name.GetStringLength());
        if (key == "type" || key == "responseTopic" || key == "correlationData") continue;
        if (!members.empty()) members += ',';
        append_json_string(members, key);
        members += ':';
        members += compact(member.value);
    }
    if (!is_valid_utf8(members)) return nullptr;  // delivered as the `control` frame it is
    return message_body::command(m.topic, std::move(members), ctx_.env.wall_ms(), id);
}

void command_desk::delivered(session& s, const std::string& command_id, action_list& out) {
    report(s, command_id, "delivered", {}, {}, out);
}

void command_desk::handle(session& s, command_result_request& r, action_list& out) {
    const auto open = s.device().open_commands.find(r.id);
    if (open == s.device().open_commands.end()) {
        pacer_.send_error(s, errc::bad_request,
                          "no command with this id is waiting for this client's answer", r.msgid,
                          out);
        return;
    }
    using outcome = command_result_request::outcome;
    static constexpr std::string_view statuses[] = {"succeeded", "failed", "rejected",
                                                    "in_progress"};
    report(s, r.id, statuses[static_cast<std::size_t>(r.status)], r.result_json, r.reason, out);
    if (r.status != outcome::in_progress) s.device().open_commands.erase(r.id);
}

void command_desk::report(session& s, const std::string& command_id, std::string_view status,
                          const std::string& result_json, const std::string& reason,
                          action_list& out) {
    const auto open = s.device().open_commands.find(command_id);
    if (open == s.device().open_commands.end()) return;
    std::string payload = R"({"correlationData":)";
    append_json_string(payload, open->second.correlation);
    payload += R"(,"device":)";
    append_json_string(payload, s.client_id());
    payload += R"(,"status":)";
    append_json_string(payload, status);
    if (!result_json.empty()) {
        payload += status == "in_progress" ? R"(,"progress":)" : R"(,"result":)";
        payload += result_json;
    }
    if (!reason.empty()) {
        payload += R"(,"reason":)";
        append_json_string(payload, reason);
    }
    payload += R"(,"at":)";
    append_int(payload, ctx_.env.wall_ms());
    payload += '}';
    relay_.publish_for_bridge(publish_upstream{0,
                                               open->second.response_topic,
                                               std::move(payload),
                                               1,
                                               false,
                                               {},
                                               open->second.correlation},
                              0, out);
}

}  // namespace mqttws
