// outbox: seq numbering, the QoS 1/2 in-flight window with retries (driven by an explicit
// clock value, never by sleeping), and replay on resume.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/outbox.hpp"

using namespace mqttws;

namespace {

struct sent {
    std::uint64_t seq;
    std::uint64_t msgid;
    std::uint8_t qos;
    bool dup;
    delivery_style style;
};

// A sink that records what it is sent. `room`: whether the client is under its budget;
// `position`/`written_total`: the connection's byte counts (each frame counts 10 bytes).
struct recorder final : delivery_sink {
    std::vector<sent> frames;
    bool room = true;
    std::uint64_t position = 0;
    std::uint64_t written_total = 0;
    std::uint64_t send(const delivery& d, bool dup) override {
        frames.push_back({d.seq, d.msgid, d.qos, dup, d.style});
        position += 10;
        return position;
    }
    bool has_room() const override { return room; }
    std::uint64_t written() const override { return written_total; }
    // Everything sent so far has left the bridge.
    void drain() { written_total = position; }
    recorder& fn() {
        drain();  // the tests written before positions existed assume a client that reads
        return *this;
    }
    std::vector<std::uint64_t> seqs() const {
        std::vector<std::uint64_t> out;
        for (const auto& f : frames)
            out.push_back(f.seq);
        return out;
    }
};

std::shared_ptr<const message_body> body(const std::string& payload = "x") {
    return std::make_shared<const message_body>("message", "t", payload, false, 0);
}

outbox_limits small_window(std::size_t window) {
    outbox_limits l;
    l.window = window;
    l.retry_ms = 1000;
    return l;
}

}  // namespace

TEST_CASE("outbox numbers every delivery and gives QoS 1/2 deliveries a msgid") {
    outbox box(outbox_limits{});
    recorder r;
    box.push(body(), 0, {}, 0, r.fn());
    box.push(body(), 1, {}, 0, r.fn());
    box.push(body(), 2, {}, 0, r.fn());
    box.push(body(), 0, {}, 0, r.fn());
    REQUIRE(r.frames.size() == 4);
    CHECK(r.seqs() == std::vector<std::uint64_t>{1, 2, 3, 4});
    CHECK(r.frames[0].msgid == 0);
    CHECK(r.frames[1].msgid == 1);
    CHECK(r.frames[2].msgid == 2);
    CHECK(box.inflight() == 2);
    CHECK_FALSE(r.frames[1].dup);
}

TEST_CASE("a full window holds further QoS 1 deliveries in order until acks free room") {
    outbox box(small_window(2));
    recorder r;
    for (int i = 0; i < 5; ++i)
        box.push(body(), 1, {}, 0, r.fn());
    CHECK(r.frames.size() == 2);
    CHECK(box.backlog() == 3);

    CHECK(box.ack(1, 10, r.fn()).has_value());
    REQUIRE(r.frames.size() == 3);
    CHECK(r.frames[2].msgid == 3);  // the oldest waiting one, not a later one

    // QoS 0 is never held behind the window.
    box.push(body(), 0, {}, 10, r.fn());
    CHECK(r.frames.back().qos == 0);

    CHECK(box.ack(2, 20, r.fn()).has_value());
    CHECK(box.ack(3, 20, r.fn()).has_value());
    CHECK(box.ack(4, 20, r.fn()).has_value());
    CHECK(box.ack(5, 20, r.fn()).has_value());
    CHECK(box.inflight() == 0);
    CHECK(box.backlog() == 0);
    std::vector<std::uint64_t> qos1_msgids;
    for (const auto& f : r.frames) {
        if (f.qos == 1) qos1_msgids.push_back(f.msgid);
    }
    CHECK(qos1_msgids == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
}

TEST_CASE("unknown and repeated acks are harmless") {
    outbox box(small_window(4));
    recorder r;
    box.push(body(), 1, {}, 0, r.fn());
    CHECK_FALSE(box.ack(99, 0, r.fn()).has_value());
    CHECK(box.ack(1, 0, r.fn()).has_value());
    CHECK_FALSE(box.ack(1, 0, r.fn()).has_value());
    CHECK(box.inflight() == 0);
}

TEST_CASE("acks out of order: each frees its place, and the oldest unacked one is still resent") {
    outbox box(small_window(3));
    recorder r;
    for (int i = 0; i < 5; ++i)
        box.push(body(), 1, {}, 0, r.fn());
    CHECK(box.inflight() == 3);  // msgids 1..3 sent, 4 and 5 wait

    // The newest first, then the middle one: each lets one waiting delivery in.
    CHECK(box.ack(3, 10, r.fn()).has_value());
    CHECK_FALSE(box.ack(3, 10, r.fn()).has_value());  // already acknowledged
    REQUIRE(r.frames.size() == 4);
    CHECK(r.frames[3].msgid == 4);
    CHECK(box.ack(2, 10, r.fn()).has_value());
    REQUIRE(r.frames.size() == 5);
    CHECK(r.frames[4].msgid == 5);
    CHECK(box.inflight() == 3);  // 1, 4, 5

    // A client that never acks msgid 1 but acks everything after it, for many deliveries: the
    // window keeps moving, and 1 is resent, alone, every retry_ms.
    std::int64_t now = 10;
    for (std::uint64_t id = 4; id < 500; ++id) {
        box.push(body(), 1, {}, now, r.fn());
        CHECK(box.ack(id, now, r.fn()).has_value());
        CHECK(box.inflight() == 3);
    }
    CHECK(box.backlog() == 0);
    r.frames.clear();
    box.resend_due(1000, r.fn());
    REQUIRE(r.frames.size() == 1);
    CHECK(r.frames[0].msgid == 1);
    CHECK(r.frames[0].dup);

    // Then acked at last; the two newest are still unacknowledged, the rest was.
    CHECK(box.ack(1, 1000, r.fn()).has_value());
    CHECK(box.inflight() == 2);
    CHECK_FALSE(box.ack(250, 1000, r.fn()).has_value());
    CHECK(box.ack(500, 1000, r.fn()).has_value());
    CHECK(box.ack(501, 1000, r.fn()).has_value());
    CHECK(box.inflight() == 0);
    CHECK_FALSE(box.next_resend().has_value());
}

TEST_CASE("an unacknowledged delivery is resent with dup after retry_ms, not before") {
    outbox box(small_window(8));
    recorder r;
    box.push(body(), 1, {}, 1000, r.fn());
    box.push(body(), 0, {}, 1000, r.fn());
    r.frames.clear();

    box.resend_due(1999, r.fn());
    CHECK(r.frames.empty());
    CHECK(box.next_resend() == 2000);

    box.resend_due(2000, r.fn());
    REQUIRE(r.frames.size() == 1);
    CHECK(r.frames[0].msgid == 1);
    CHECK(r.frames[0].seq == 1);
    CHECK(r.frames[0].dup);
    CHECK(box.resends() == 1);

    // The retry clock restarts from the resend.
    r.frames.clear();
    box.resend_due(2999, r.fn());
    CHECK(r.frames.empty());
    box.resend_due(3000, r.fn());
    CHECK(r.frames.size() == 1);

    // Once acknowledged, nothing more is resent.
    box.ack(1, 3000, r.fn());
    r.frames.clear();
    box.resend_due(10000, r.fn());
    CHECK(r.frames.empty());
    CHECK_FALSE(box.next_resend().has_value());
}

TEST_CASE(
    "nothing is sent while disconnected; a resume replays everything after lastSeq in order") {
    outbox box(small_window(8));
    recorder r;
    box.push(body(), 0, {}, 0, r.fn());  // seq 1
    box.push(body(), 1, {}, 0, r.fn());  // seq 2, msgid 1
    box.push(body(), 1, {}, 0, r.fn());  // seq 3, msgid 2
    box.ack(1, 0, r.fn());
    box.disconnect();
    r.frames.clear();

    box.push(body(), 0, {}, 0, r.fn());  // seq 4
    box.push(body(), 1, {}, 0, r.fn());  // seq 5, msgid 3
    box.resend_due(100000, r.fn());
    CHECK(r.frames.empty());

    // The client saw up to seq 3 (but did not ack msgid 2).
    REQUIRE(box.can_resume_from(3));
    box.reconnect(3, 100000, r.fn());
    REQUIRE(r.frames.size() == 3);
    CHECK(r.frames[0].seq == 3);  // unacked, seen: resent with dup
    CHECK(r.frames[0].dup);
    CHECK(r.frames[1].seq == 4);  // never sent: plain
    CHECK_FALSE(r.frames[1].dup);
    CHECK(r.frames[2].seq == 5);
    CHECK_FALSE(r.frames[2].dup);
    CHECK(box.connected());
}

TEST_CASE(
    "a resume from an older lastSeq replays the gap, resending seen-but-unacked ones with dup") {
    outbox box(small_window(8));
    recorder r;
    for (int i = 0; i < 4; ++i)
        box.push(body(), i % 2 == 0 ? 0 : 1, {}, 0, r.fn());  // seq 1..4
    box.disconnect();
    r.frames.clear();
    box.reconnect(1, 50, r.fn());
    CHECK(r.seqs() == std::vector<std::uint64_t>{2, 3, 4});
    CHECK(r.frames[0].dup);        // seq 2 was sent before (QoS 1, in flight)
    CHECK_FALSE(r.frames[1].dup);  // seq 3 is QoS 0: replayed as it was
    CHECK(r.frames[2].dup);
}

TEST_CASE(
    "history overflow makes resuming impossible, but QoS 1 deliveries are still redelivered") {
    outbox_limits limits = small_window(100);
    limits.history_messages = 3;
    outbox box(limits);
    recorder r;
    box.push(body(), 1, {}, 0, r.fn());  // seq 1, msgid 1: never acked
    box.disconnect();
    for (int i = 0; i < 5; ++i)
        box.push(body(), 0, {}, 0, r.fn());  // seq 2..6; history keeps 4..6
    CHECK_FALSE(box.can_resume_from(1));
    CHECK(box.can_resume_from(3));
    CHECK_FALSE(box.can_resume_from(7));  // beyond what was ever assigned
    CHECK(box.can_resume_from(6));        // nothing missed

    r.frames.clear();
    box.reconnect(std::nullopt, 10, r.fn());
    REQUIRE(r.frames.size() == 1);  // QoS 0 in the gap are lost; the QoS 1 one is not
    CHECK(r.frames[0].msgid == 1);
    CHECK(r.frames[0].dup);
}

TEST_CASE("a resume after the history wrapped replays what it kept, each as it was delivered") {
    // The history keeps no seq per entry (its front's, plus the place) and packs the style: the
    // replay must still give each delivery its own seq, msgid, QoS and style.
    outbox_limits limits = small_window(100);
    limits.history_messages = 4;
    limits.history_bytes = 1000;
    outbox box(limits);
    recorder r;
    box.disconnect();
    const auto style_of = [](int i) {
        return delivery_style{i % 3 == 0, static_cast<std::uint16_t>(i), 1000u * i};
    };
    for (int i = 1; i <= 11; ++i)  // seq 1..11; QoS 1 for even seqs (msgid 1..5)
        box.push(body(), i % 2 == 0 ? 1 : 0, style_of(i), 0, r.fn());
    // Kept: seq 8..11 (the ring wrapped twice). A byte-bounded pop moves the front too.
    CHECK_FALSE(box.can_resume_from(6));
    REQUIRE(box.can_resume_from(7));
    box.push(body(std::string(900, 'b')), 0, style_of(12), 0, r.fn());  // seq 12: 8..11 leave
    CHECK(box.history_size() == 1);
    CHECK_FALSE(box.can_resume_from(10));
    REQUIRE(box.can_resume_from(11));

    outbox again(limits);
    again.disconnect();
    for (int i = 1; i <= 11; ++i)
        again.push(body(), i % 2 == 0 ? 1 : 0, style_of(i), 0, r.fn());
    r.frames.clear();
    // Saw up to 8: 9 and 11 (QoS 0) are replayed from the history; 10 (QoS 1) was never sent
    // and follows the older QoS 1 ones out of the backlog.
    again.reconnect(8, 0, r.fn());
    std::vector<sent> replayed;
    for (const auto& f : r.frames)
        if (f.seq > 8) replayed.push_back(f);
    std::sort(replayed.begin(), replayed.end(),
              [](const sent& a, const sent& b) { return a.seq < b.seq; });
    REQUIRE(replayed.size() == 3);
    for (std::size_t k = 0; k < 3; ++k) {
        const int seq = 9 + static_cast<int>(k);
        CAPTURE(seq);
        CHECK(replayed[k].seq == static_cast<std::uint64_t>(seq));
        CHECK(replayed[k].qos == (seq % 2 == 0 ? 1 : 0));
        CHECK(replayed[k].msgid == (seq % 2 == 0 ? static_cast<std::uint64_t>(seq / 2) : 0));
        CHECK(replayed[k].style.binary == (seq % 3 == 0));
        CHECK(replayed[k].style.batch_max == seq);
        CHECK(replayed[k].style.batch_delay_ms == 1000u * static_cast<std::uint32_t>(seq));
    }
}

TEST_CASE("a resume from inside a run of deliveries alike replays each with its own msgid") {
    // The history keeps how deliveries went out once per run of deliveries alike (QoS, style,
    // consecutive msgids). Runs the front has passed are dropped; a replay starting inside a run
    // must still give every delivery its QoS, msgid and style.
    outbox_limits limits = small_window(100);
    limits.history_messages = 8;
    outbox box(limits);
    recorder r;
    const delivery_style plain{};
    const delivery_style batched{false, 10, 50};
    for (int i = 1; i <= 4; ++i)
        box.push(body(), 0, plain, 0, r.fn());  // seq 1..4
    for (int i = 5; i <= 8; ++i)
        box.push(body(), 1, plain, 0, r.fn());  // seq 5..8, msgid 1..4
    for (int i = 9; i <= 10; ++i)
        box.push(body(), 0, batched, 0, r.fn());  // seq 9..10
    for (int i = 11; i <= 12; ++i)
        box.push(body(), 1, plain, 0, r.fn());   // seq 11..12, msgid 5..6
    REQUIRE(box.ack(1, 0, r.fn()).has_value());  // seq 5
    box.disconnect();
    box.push(body(), 0, batched, 0, r.fn());  // seq 13; the history keeps 6..13
    CHECK_FALSE(box.can_resume_from(4));
    REQUIRE(box.can_resume_from(5));

    r.frames.clear();
    box.reconnect(5, 0, r.fn());
    REQUIRE(r.seqs() == std::vector<std::uint64_t>{6, 7, 8, 9, 10, 11, 12, 13});
    const std::vector<std::uint64_t> msgids{2, 3, 4, 0, 0, 5, 6, 0};
    for (std::size_t k = 0; k < r.frames.size(); ++k) {
        const sent& f = r.frames[k];
        CAPTURE(f.seq);
        CHECK(f.msgid == msgids[k]);
        CHECK(f.qos == (f.msgid == 0 ? 0 : 1));
        CHECK(f.dup == (f.qos == 1));  // sent before the drop, never acked
        CHECK(f.style.batch_max == (f.qos == 0 ? 10 : 0));
        CHECK(f.style.batch_delay_ms == (f.qos == 0 ? 50u : 0u));
    }
}

TEST_CASE("an outbox that keeps no history still numbers, sends and windows its deliveries") {
    outbox box(small_window(2));
    recorder r;
    box.push(body(), 0, {}, 0, r.fn());
    CHECK(box.history_size() == 1);
    box.keep_no_history();
    CHECK(box.history_size() == 0);
    for (int i = 0; i < 3; ++i)
        box.push(body(), 1, {}, 0, r.fn());
    box.push(body(), 0, {}, 0, r.fn());
    CHECK(box.history_size() == 0);
    CHECK(r.seqs() == std::vector<std::uint64_t>{1, 2, 3, 5});  // 4 waits for the window
    CHECK(box.ack(1, 0, r.fn()).has_value());
    CHECK(r.frames.back().seq == 4);
    CHECK(box.can_resume_from(5));  // nothing missed
    CHECK_FALSE(box.can_resume_from(3));
}

TEST_CASE("history is bounded by bytes as well as by count") {
    outbox_limits limits;
    limits.history_messages = 1000;
    limits.history_bytes = 500;
    outbox box(limits);
    recorder r;
    const std::string big(200, 'a');
    for (int i = 0; i < 10; ++i)
        box.push(body(big), 0, {}, 0, r.fn());
    CHECK(box.history_size() < 3);
    CHECK(box.history_size() >= 1);
    CHECK_FALSE(box.can_resume_from(5));
}

TEST_CASE("while disconnected the backlog does not enter the window; after reconnect it does") {
    outbox box(small_window(2));
    recorder r;
    box.disconnect();
    for (int i = 0; i < 3; ++i)
        box.push(body(), 1, {}, 0, r.fn());
    CHECK(r.frames.empty());
    CHECK(box.inflight() == 0);
    CHECK(box.backlog() == 3);
    box.reconnect(0, 5, r.fn());
    REQUIRE(r.frames.size() == 2);
    CHECK_FALSE(r.frames[0].dup);  // first time on the wire
    CHECK(box.inflight() == 2);
    CHECK(box.backlog() == 1);
}
