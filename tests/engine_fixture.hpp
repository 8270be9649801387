// Test fixture for core/engine: drives one engine with frames and broker events and records
// what it asks the edges to do, so that tests read as "frames in → actions out".
//
// - `fake_platform`: a clock that only moves when told to, and deterministic `random_hex`.
// - `json_frame`: a frame the engine sent, parsed strictly with RapidJSON (valid UTF-8, no raw
//   NUL); tests look at fields by name (never at whole strings), so frames may gain fields
//   without breaking tests. The encoder tests (test_replies.cpp, ...) use it on text too.
// - `topics_of`: the sorted topics of a list of frames.
// - `engine_fixture`: owns the engine; every event call records its actions. Frames sent to a
//   session land in that session's inbox (`client(id).frames()` / `take()`); upstream actions are
//   listed by kind (`subscribes()`, `unsubscribes()`, `publishes()`) since `clear_actions()`.
//
// Text frames reach the engine as they do with one thread (engine::client_text), or, when the
// environment has MQTTWS_TEST_DECODE_ON_IO_THREAD set (a second ctest run of the engine tests,
// tests/CMakeLists.txt), as they do with --threads: decoded first, as an I/O thread does
// (frame_decoder::decode_for_engine), then handed over (engine::client_decoded).
//
// Remember that the engine starts with the upstream DOWN: call `upstream_connected()` first.
// Thread safety: none; one fixture per test case.
#pragma once

#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/actions.hpp"
#include "core/engine.hpp"
#include "core/platform.hpp"
#include "fixed_platform.hpp"

namespace mqttws::test {

// ---------------------------------------------------------------- platform

class fake_platform final : public platform {
  public:
    std::int64_t steady_ms() const override { return steady; }
    std::int64_t wall_ms() const override { return wall; }
    // 2n lowercase hex digits of a counter: "000000000001", "000000000002", ... for n = 6.
    std::string random_hex(std::size_t n) override { return counter_hex(n, ++random_calls); }
    // What each connection's socket still holds: 0 unless a test says otherwise (a client that
    // reads everything at once).
    std::size_t buffered_bytes(connection_id id) const override {
        const auto it = buffered.find(id);
        return it == buffered.end() ? 0 : it->second;
    }
    // Moves both clocks forward.
    void advance(std::int64_t ms) {
        steady += ms;
        wall += ms;
    }

    std::int64_t steady = 1'000'000;
    std::int64_t wall = 1'700'000'000'000;
    std::uint64_t random_calls = 0;
    std::map<connection_id, std::size_t> buffered;
};

// ---------------------------------------------------------------- frames

class json_frame {
  public:
    static constexpr std::int64_t missing = std::numeric_limits<std::int64_t>::min();

    // Parsed strictly: one JSON object in valid UTF-8, and no raw NUL anywhere (a parser reading
    // a counted buffer may take a NUL for the end of the input and ignore what follows).
    explicit json_frame(frame_ptr raw)
        : raw_(std::move(raw)), doc_(std::make_shared<rapidjson::Document>()) {
        if (raw_->find('\0') != std::string::npos) FAIL_CHECK("a frame with a raw NUL: ", *raw_);
        doc_->Parse<rapidjson::kParseValidateEncodingFlag>(raw_->data(), raw_->size());
        if (doc_->HasParseError() || !doc_->IsObject())
            FAIL_CHECK("a frame that is not a JSON object in valid UTF-8: ", *raw_);
    }
    // A frame given as text, e.g. an encoder's output.
    explicit json_frame(std::string text) : json_frame(make_frame(std::move(text))) {}

    const frame_ptr& raw() const { return raw_; }
    const std::string& text() const { return *raw_; }

    bool has(std::string_view name) const { return find(name) != nullptr; }
    // The field, or a JSON null when absent.
    const rapidjson::Value& at(std::string_view name) const {
        static const rapidjson::Value null_value;
        const rapidjson::Value* v = find(name);
        return v == nullptr ? null_value : *v;
    }
    std::string type() const { return str("type"); }
    // A string field; "<missing 'name'>" when absent or not a string (so checks fail visibly).
    std::string str(std::string_view name) const {
        const rapidjson::Value* v = find(name);
        if (v == nullptr || !v->IsString()) return "<missing '" + std::string(name) + "'>";
        return {v->GetString(), v->GetStringLength()};
    }
    // An integer field; `missing` when absent or not an integer.
    std::int64_t num(std::string_view name) const {
        const rapidjson::Value* v = find(name);
        if (v == nullptr || !v->IsInt64()) return missing;
        return v->GetInt64();
    }
    // The field re-serialised as compact JSON ("true", "\"s1\"", "{\"a\":1}"), or "<missing>".
    std::string json(std::string_view name) const {
        const rapidjson::Value* v = find(name);
        if (v == nullptr) return "<missing>";
        rapidjson::StringBuffer buffer;
        rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
        v->Accept(writer);
        return {buffer.GetString(), buffer.GetSize()};
    }

  private:
    const rapidjson::Value* find(std::string_view name) const {
        if (doc_->HasParseError() || !doc_->IsObject()) return nullptr;
        for (auto it = doc_->MemberBegin(); it != doc_->MemberEnd(); ++it) {
            if (std::string_view(it->name.GetString(), it->name.GetStringLength()) == name)
                return &it->value;
        }
        return nullptr;
    }

    frame_ptr raw_;
    std::shared_ptr<rapidjson::Document> doc_;
};

using frame_list = std::vector<json_frame>;

inline frame_list of_type(const frame_list& frames, std::string_view type) {
    frame_list out;
    for (const auto& f : frames) {
        if (f.type() == type) out.push_back(f);
    }
    return out;
}

using strings = std::vector<std::string>;

// The "topic" field of each frame, sorted (compare with `strings{...}`).
inline strings topics_of(const frame_list& frames) {
    strings out;
    for (const auto& f : frames)
        out.push_back(f.str("topic"));
    std::sort(out.begin(), out.end());
    return out;
}

// ---------------------------------------------------------------- frames the tests send

inline std::string quoted(std::string_view s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

// {"type":"subscribe","topic":<filter>,"qos":<qos>[,"msgid":<msgid>]}; `msgid` is raw JSON.
inline std::string subscribe_frame(std::string_view filter, int qos = 0,
                                   std::string_view msgid = {}) {
    std::string out =
        R"({"type":"subscribe","topic":)" + quoted(filter) + ",\"qos\":" + std::to_string(qos);
    if (!msgid.empty()) out += ",\"msgid\":" + std::string(msgid);
    return out + "}";
}

inline std::string unsubscribe_frame(std::string_view filter, std::string_view msgid = {}) {
    std::string out = R"({"type":"unsubscribe","topic":)" + quoted(filter);
    if (!msgid.empty()) out += ",\"msgid\":" + std::string(msgid);
    return out + "}";
}

// A message as the upstream client hands it over.
inline broker_message broker_msg(std::string topic, std::string payload, std::uint8_t qos = 0,
                                 bool retained = false, std::vector<std::uint32_t> ids = {}) {
    broker_message m;
    m.topic = std::move(topic);
    m.payload = std::move(payload);
    m.qos = qos;
    m.retained = retained;
    m.subscription_ids = std::move(ids);
    return m;
}

inline engine_config v3_config() {
    engine_config c;
    c.broker.mqtt_version = 3;
    return c;
}

// ---------------------------------------------------------------- the fixture

class engine_fixture;

// A WebSocket client as the engine sees it: a session id with an inbox.
class client_handle {
  public:
    client_handle(engine_fixture& fixture, connection_id id) : fixture_(&fixture), id_(id) {}

    connection_id id() const { return id_; }
    // Sends one text frame; returns the actions of that call.
    const action_list& send(std::string_view frame);
    // Sends one binary frame; returns the actions of that call.
    const action_list& send_binary(std::string_view frame);
    void close();
    // Frames received since the last take(), parsed.
    const frame_list& frames() const;
    frame_list of_type(std::string_view type) const;
    // Returns the frames received since the last take() and empties the inbox.
    frame_list take();
    std::size_t count() const { return frames().size(); }

  private:
    engine_fixture* fixture_;
    connection_id id_;
};

class engine_fixture {
  public:
    // Presence and the bridge's status publishes are off unless a test asks for them
    // (`with_presence`): the other tests count the publishes and filters of their clients only.
    enum presence_mode { without_presence, with_presence };
    // `shared`: limits shared with other engines (as shards share them).
    explicit engine_fixture(engine_config config = {}, presence_mode presence = without_presence,
                            bridge_state shared = {})
        : eng(with_mode(std::move(config), presence), env, std::make_shared<security_policy>(),
              std::move(shared)) {}
    engine_fixture(const engine_fixture&) = delete;
    engine_fixture& operator=(const engine_fixture&) = delete;

    fake_platform env;  // declared before `eng`, which keeps a reference to it
    engine eng;

    // ---- clients ----
    client_handle open(connection_id id, std::string remote = "127.0.0.1:50000") {
        action_list out;
        eng.client_opened(id, std::move(remote), {}, out);
        opened_.insert(id);
        inboxes_[id];
        record(std::move(out));
        return client_handle(*this, id);
    }
    // The client `id`, opened on first use.
    client_handle client(connection_id id) {
        if (opened_.count(id) == 0) return open(id);
        return client_handle(*this, id);
    }
    // Opens `id`, authenticates it as `client_id` and empties its inbox.
    client_handle auth(connection_id id, std::string_view client_id) {
        client_handle c = client(id);
        c.send(R"({"type":"auth","clientId":)" + quoted(client_id) + "}");
        c.take();
        return c;
    }
    // Opens `id`, authenticates it as device `device_id` and empties its inbox.
    client_handle device(connection_id id, std::string_view device_id) {
        client_handle c = client(id);
        c.send(R"({"type":"auth","deviceId":)" + quoted(device_id) + "}");
        c.take();
        return c;
    }
    // `id` subscribes to `filter`; a subscribe_upstream it caused is confirmed with the qos
    // asked for; the inbox is emptied. The upstream must be up.
    client_handle subscribed(connection_id id, std::string_view filter, int qos = 0) {
        client_handle c = client(id);
        const action_list& out = c.send(subscribe_frame(filter, qos, "\"sub\""));
        std::vector<op_id> ops;
        for (const auto& a : out) {
            if (const auto* s = std::get_if<subscribe_upstream>(&a)) ops.push_back(s->op);
        }
        for (const op_id op : ops)
            upstream_subscribed(op, qos);
        c.take();
        return c;
    }

    // ---- broker events; each returns the actions of that call ----
    const action_list& upstream_connected(bool session_present = false) {
        action_list out;
        eng.upstream_connected(session_present, out);
        return record(std::move(out));
    }
    const action_list& upstream_lost(std::string_view reason = "connection reset") {
        action_list out;
        eng.upstream_lost(reason, out);
        return record(std::move(out));
    }
    const action_list& upstream_message(const broker_message& m) {
        action_list out;
        eng.upstream_message(m, out);
        return record(std::move(out));
    }
    const action_list& shard_message(const broker_message& m,
                                     const std::vector<std::uint32_t>& subscription_ids,
                                     bool local) {
        action_list out;
        eng.shard_message(m, subscription_ids, local, out);
        return record(std::move(out));
    }
    const action_list& from_peer_shard(const action& request) {
        action_list out;
        eng.from_peer_shard(request, out);
        return record(std::move(out));
    }
    const action_list& peer_presence(const std::string& device, bool online) {
        action_list out;
        eng.peer_presence(device, online, out);
        return record(std::move(out));
    }
    const action_list& upstream_subscribed(op_id op, int granted) {
        action_list out;
        eng.upstream_subscribed(op, granted, out);
        return record(std::move(out));
    }
    // Confirms the last subscribe_upstream sent for `filter`.
    const action_list& confirm(std::string_view filter, int granted) {
        return upstream_subscribed(last_subscribe_op(filter), granted);
    }
    const action_list& upstream_published(op_id op, std::optional<errc> error = std::nullopt,
                                          std::string_view message = {}) {
        action_list out;
        eng.upstream_published(op, error, message, out);
        return record(std::move(out));
    }
    const action_list& upstream_congestion(bool congested) {
        action_list out;
        eng.upstream_congestion(congested, out);
        return record(std::move(out));
    }
    const action_list& tick() {
        action_list out;
        eng.tick(out);
        return record(std::move(out));
    }
    const action_list& shutdown() {
        action_list out;
        eng.shutdown(out);
        return record(std::move(out));
    }
    const action_list& client_text(connection_id id, std::string_view frame) {
        return client_frame(id, frame, /*binary=*/false);
    }
    const action_list& client_binary(connection_id id, std::string_view frame) {
        return client_frame(id, frame, /*binary=*/true);
    }
    // A frame as the engine gets it: decoded on its thread, or (decode_on_io_thread_) decoded
    // first as an I/O thread does.
    const action_list& client_frame(connection_id id, std::string_view frame, bool binary) {
        action_list out;
        if (decode_on_io_thread_) {
            eng.client_decoded(id,
                               binary ? io_thread_decoder_.decode_binary_for_engine(frame)
                                      : io_thread_decoder_.decode_for_engine(frame),
                               out);
        } else if (binary) {
            eng.client_binary(id, frame, out);
        } else {
            eng.client_text(id, frame, out);
        }
        return record(std::move(out));
    }
    // `clean`: the client closed normally (ends its session); false: the connection dropped
    // (the session waits for a resume).
    const action_list& client_closed(connection_id id, bool clean = true) {
        action_list out;
        eng.client_closed(id, clean ? 1000 : 1006, /*by_peer=*/true, out);
        opened_.erase(id);
        return record(std::move(out));
    }

    // Moves both clocks forward (call tick() to let the engine notice).
    void advance(std::int64_t ms) { env.advance(ms); }

    // Flow control: a stalled client reads nothing, so every frame sent to it stays in its
    // socket's buffer (env.buffered); drain() empties the buffer and lets it read again.
    void stall(connection_id id) { stalled_.insert(id); }
    void drain(connection_id id) {
        stalled_.erase(id);
        env.buffered[id] = 0;
    }
    const action_list& poll_congested() {
        action_list out;
        eng.poll_congested(out);
        return record(std::move(out));
    }
    engine_stats stats() const { return eng.stats(); }

    // ---- what the engine asked for since the last clear_actions() ----
    const action_list& actions() const { return actions_; }
    template <class T>
    std::vector<T> of_kind() const {
        std::vector<T> out;
        for (const auto& a : actions_) {
            if (const auto* t = std::get_if<T>(&a)) out.push_back(*t);
        }
        return out;
    }
    std::vector<subscribe_upstream> subscribes() const { return of_kind<subscribe_upstream>(); }
    std::vector<unsubscribe_upstream> unsubscribes() const {
        return of_kind<unsubscribe_upstream>();
    }
    std::vector<publish_upstream> publishes() const { return of_kind<publish_upstream>(); }
    std::vector<send_frame> sends() const { return of_kind<send_frame>(); }
    std::vector<close_client> closes() const { return of_kind<close_client>(); }
    std::vector<pause_reading> pauses() const { return of_kind<pause_reading>(); }
    std::vector<resume_reading> resumes() const { return of_kind<resume_reading>(); }
    std::vector<state_record> states() const { return of_kind<state_record>(); }
    std::vector<audit_record> audits() const { return of_kind<audit_record>(); }
    // Upstream actions of any kind (subscribe, unsubscribe, publish).
    std::size_t upstream_action_count() const {
        return subscribes().size() + unsubscribes().size() + publishes().size();
    }
    void clear_actions() { actions_.clear(); }
    // Forgets recorded actions and empties every inbox.
    void clear() {
        actions_.clear();
        for (auto& [id, inbox] : inboxes_)
            inbox.clear();
    }

    // ---- remembered over the whole test (not cleared) ----
    // The subscription id the last subscribe_upstream of `filter` carried (0 if none was seen).
    std::uint32_t subscription_id(std::string_view filter) const {
        const auto it = last_subscribe_.find(std::string(filter));
        return it == last_subscribe_.end() ? 0 : it->second.subscription_id;
    }
    op_id last_subscribe_op(std::string_view filter) const {
        const auto it = last_subscribe_.find(std::string(filter));
        REQUIRE_MESSAGE(it != last_subscribe_.end(), "no subscribe_upstream for ", filter);
        return it->second.op;
    }

    // Inbox access for client_handle.
    frame_list& inbox(connection_id id) { return inboxes_[id]; }

  private:
    static engine_config with_mode(engine_config config, presence_mode presence) {
        if (presence == without_presence) {
            config.devices.presence_topic.clear();
            config.devices.bridge_status_topic.clear();
        }
        return config;
    }

    const action_list& record(action_list out) {
        for (const auto& a : out) {
            if (const auto* s = std::get_if<send_frame>(&a)) {
                REQUIRE_MESSAGE(static_cast<bool>(s->frame), "send_frame without a frame");
                // What the client receives: the recipient's head, then the (shared) frame.
                const frame_ptr whole =
                    s->head.empty() ? s->frame : make_frame(s->head.str() + *s->frame);
                if (stalled_.count(s->to) > 0) env.buffered[s->to] += whole->size();
                inboxes_[s->to].emplace_back(whole);
            } else if (const auto* sub = std::get_if<subscribe_upstream>(&a)) {
                last_subscribe_[sub->filter] = *sub;
            }
            actions_.push_back(a);
        }
        last_ = std::move(out);
        return last_;
    }

    const bool decode_on_io_thread_ = std::getenv("MQTTWS_TEST_DECODE_ON_IO_THREAD") != nullptr;
    frame_decoder io_thread_decoder_{eng.config().decode};
    std::set<connection_id> opened_;
    std::set<connection_id> stalled_;
    std::map<connection_id, frame_list> inboxes_;
    std::map<std::string, subscribe_upstream> last_subscribe_;
    action_list actions_;
    action_list last_;
};

inline const action_list& client_handle::send(std::string_view frame) {
    return fixture_->client_text(id_, frame);
}
inline const action_list& client_handle::send_binary(std::string_view frame) {
    return fixture_->client_binary(id_, frame);
}
inline void client_handle::close() {
    fixture_->client_closed(id_);
}
inline const frame_list& client_handle::frames() const {
    return fixture_->inbox(id_);
}
inline frame_list client_handle::of_type(std::string_view type) const {
    return test::of_type(frames(), type);
}
inline frame_list client_handle::take() {
    frame_list out = std::move(fixture_->inbox(id_));
    fixture_->inbox(id_).clear();
    return out;
}

// ---------------------------------------------------------------- action helpers

template <class T>
std::vector<T> actions_of(const action_list& list) {
    std::vector<T> out;
    for (const auto& a : list) {
        if (const auto* t = std::get_if<T>(&a)) out.push_back(*t);
    }
    return out;
}

}  // namespace mqttws::test
