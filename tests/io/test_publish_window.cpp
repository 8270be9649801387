// Unit tests for io/publish_window: how many publishes the MQTT client holds at once, the ones
// that wait, in order, and the bound on what waits.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "io/publish_window.hpp"

using namespace mqttws;

namespace {

publish_upstream pub(std::string payload, std::uint8_t qos = 0) {
    publish_upstream r;
    r.topic = "t";  // 1 byte
    r.payload = std::move(payload);
    r.qos = qos;
    return r;
}

// Offers `r`; hands it over at once when the window says so. Returns the verdict.
// `all` publishes completed, none of them QoS 1/2.
publish_completions done(std::uint64_t all) {
    return {all, 0};
}

publish_window::verdict offer(publish_window& w, publish_upstream r, publish_completions completed,
                              std::vector<std::string>& handed) {
    const auto v = w.offer(r, completed);
    if (v == publish_window::verdict::hand_over) {
        handed.push_back(r.payload);
        w.handed(r);
    }
    return v;
}

void release(publish_window& w, publish_completions completed, std::vector<std::string>& handed) {
    while (auto r = w.next(completed)) {
        handed.push_back(r->payload);
        w.handed(*r);
    }
}

}  // namespace

TEST_CASE("publish_window: up to max_inflight go to the client at once, the rest wait in order") {
    publish_window w(2, 1 << 20);
    std::vector<std::string> handed;
    CHECK(offer(w, pub("a"), done(0), handed) == publish_window::verdict::hand_over);
    CHECK(offer(w, pub("b"), done(0), handed) == publish_window::verdict::hand_over);
    CHECK(offer(w, pub("c"), done(0), handed) == publish_window::verdict::wait);
    CHECK(offer(w, pub("d"), done(0), handed) == publish_window::verdict::wait);
    CHECK(handed == std::vector<std::string>{"a", "b"});
    CHECK(w.stats(done(0)).inside == 2);
    CHECK(w.stats(done(0)).waiting == 2);
    CHECK(w.stats(done(0)).waiting_bytes == 4);

    release(w, done(0), handed);  // nothing completed: no room
    CHECK(handed.size() == 2);
    release(w, done(1), handed);  // one completed: one more
    CHECK(handed == std::vector<std::string>{"a", "b", "c"});
    // While some wait, a new one queues behind them even when there is room: order is kept.
    CHECK(offer(w, pub("e"), done(3), handed) == publish_window::verdict::wait);
    release(w, done(3), handed);
    CHECK(handed == std::vector<std::string>{"a", "b", "c", "d", "e"});
    CHECK_FALSE(w.has_waiting());
    CHECK(w.stats(done(3)).inside == 2);
    CHECK(w.stats(done(3)).waiting_bytes == 0);
}

TEST_CASE("publish_window: past max_queued_bytes a publish is refused and counted") {
    publish_window w(1, 10);  // 10 bytes of topics and payloads may wait
    std::vector<std::string> handed;
    CHECK(offer(w, pub("x"), done(0), handed) == publish_window::verdict::hand_over);
    CHECK(offer(w, pub("1234"), done(0), handed) == publish_window::verdict::wait);  // 5 bytes
    CHECK(offer(w, pub("1234"), done(0), handed) == publish_window::verdict::wait);  // 10
    publish_upstream big = pub("9", 1);
    CHECK(w.offer(big, done(0)) == publish_window::verdict::refuse);
    CHECK(big.payload == "9");  // left to the caller, to answer
    CHECK(w.stats(done(0)).refused == 1);
    release(w, done(1), handed);  // room again: the first waiting one goes; 5 bytes wait
    CHECK(offer(w, pub("5678"), done(1), handed) == publish_window::verdict::wait);
    CHECK(w.stats(done(1)).waiting_bytes == 10);
    CHECK(w.stats(done(1)).refused == 1);
}

TEST_CASE("publish_window: a reconnect forgets what the client held from the previous connection") {
    publish_window w(2, 1 << 20);
    std::vector<std::string> handed;
    offer(w, pub("a"), done(0), handed);
    offer(w, pub("b"), done(0), handed);
    CHECK(offer(w, pub("c"), done(0), handed) == publish_window::verdict::wait);
    // The connection dropped and the client never reports "a" and "b": without restart() the
    // window would stay full for good.
    w.restart(done(0), 65535);
    CHECK(w.stats(done(0)).inside == 0);
    release(w, done(0), handed);
    CHECK(handed == std::vector<std::string>{"a", "b", "c"});
    // Late completions of "a" and "b" only make room, never a negative count.
    CHECK(w.stats(done(2)).inside == 0);
    CHECK(offer(w, pub("d"), done(2), handed) == publish_window::verdict::hand_over);
}

TEST_CASE("publish_window: a lost connection hands back what waits, in order") {
    publish_window w(1, 1 << 20);
    std::vector<std::string> handed;
    offer(w, pub("a"), done(0), handed);
    CHECK(offer(w, pub("b", 1), done(0), handed) == publish_window::verdict::wait);
    CHECK(offer(w, pub("c", 2), done(0), handed) == publish_window::verdict::wait);
    const auto back = w.take_waiting();
    REQUIRE(back.size() == 2);
    CHECK(back[0].payload == "b");
    CHECK(back[1].payload == "c");
    CHECK_FALSE(w.has_waiting());
    CHECK(w.stats(done(0)).waiting_bytes == 0);
    CHECK(w.next(done(1)) == std::nullopt);
}

TEST_CASE("publish_window: congested from half of the bound waiting until a quarter, or a loss") {
    publish_window w(1, 400);  // congested at 200 bytes waiting, clear again at 100
    std::vector<std::string> handed;
    const std::string p49(49, 'x');  // 50 bytes with the topic
    CHECK(offer(w, pub(p49), done(0), handed) == publish_window::verdict::hand_over);
    for (int i = 0; i < 3; ++i)
        CHECK(offer(w, pub(p49), done(0), handed) == publish_window::verdict::wait);
    CHECK(w.stats(done(0)).waiting_bytes == 150);
    CHECK_FALSE(w.congested());
    offer(w, pub(p49), done(0), handed);  // 200
    CHECK(w.congested());
    // Refusals stay congested; publishes leaving the wait do not clear it above a quarter.
    for (int i = 0; i < 4; ++i)
        offer(w, pub(p49), done(0), handed);
    CHECK(offer(w, pub(p49), done(0), handed) == publish_window::verdict::refuse);
    CHECK(w.stats(done(0)).waiting_bytes == 400);
    std::uint64_t completed = 0;
    const auto release_one = [&] {
        ++completed;
        const auto r = w.next(done(completed));
        REQUIRE(r);
        w.handed(*r);
    };
    for (int i = 0; i < 5; ++i)
        release_one();
    CHECK(w.stats(done(completed)).waiting_bytes == 150);
    CHECK(w.congested());
    release_one();  // 100: a quarter
    CHECK_FALSE(w.congested());
    // A lost connection takes what waits: nothing is congested after it.
    offer(w, pub(p49), done(completed), handed);
    offer(w, pub(p49), done(completed), handed);
    CHECK(w.congested());
    CHECK(w.take_waiting().size() == 4);
    CHECK_FALSE(w.congested());
}

TEST_CASE(
    "publish_window: at most the broker's Receive Maximum of QoS 1/2 publishes in the client") {
    publish_window w(1000, 1 << 20);
    w.restart({0, 0}, 2);  // the CONNACK said Receive Maximum 2
    std::vector<std::string> handed;
    CHECK(offer(w, pub("a", 1), {0, 0}, handed) == publish_window::verdict::hand_over);
    CHECK(offer(w, pub("b", 0), {0, 0}, handed) == publish_window::verdict::hand_over);
    CHECK(offer(w, pub("c", 2), {0, 0}, handed) == publish_window::verdict::hand_over);
    // Two QoS 1/2 unanswered: the next ones wait, in order.
    CHECK(offer(w, pub("d", 1), {0, 0}, handed) == publish_window::verdict::wait);
    CHECK(offer(w, pub("e", 2), {0, 0}, handed) == publish_window::verdict::wait);
    release(w, {1, 0}, handed);  // "b" written: no answer yet, no room for QoS 1/2
    CHECK(handed == std::vector<std::string>{"a", "b", "c"});
    release(w, {2, 1}, handed);  // "a" answered: room for "d" only
    CHECK(handed == std::vector<std::string>{"a", "b", "c", "d"});
    release(w, {3, 2}, handed);  // "c" answered: "e"
    CHECK(handed == std::vector<std::string>{"a", "b", "c", "d", "e"});
    CHECK(offer(w, pub("f", 1), {3, 2}, handed) == publish_window::verdict::wait);
    // A new connection whose CONNACK has no Receive Maximum: 65535, so it goes.
    w.restart({3, 2}, 65535);
    release(w, {3, 2}, handed);
    CHECK(handed.back() == "f");
}

TEST_CASE("publish_window: QoS 0 passes QoS 1/2 that wait only for the broker's answers") {
    publish_window w(3, 1 << 20);
    w.restart({0, 0}, 1);  // Receive Maximum 1
    std::vector<std::string> handed;
    CHECK(offer(w, pub("a", 1), {0, 0}, handed) == publish_window::verdict::hand_over);
    CHECK(offer(w, pub("b", 1), {0, 0}, handed) == publish_window::verdict::wait);
    // The window has room, the broker has not: QoS 0 goes at once, past "b".
    CHECK(offer(w, pub("c", 0), {0, 0}, handed) == publish_window::verdict::hand_over);
    CHECK(offer(w, pub("d", 0), {0, 0}, handed) == publish_window::verdict::hand_over);
    CHECK(handed == std::vector<std::string>{"a", "c", "d"});
    // Now the window is full (3 in the client): QoS 0 waits as well, in order behind "b".
    CHECK(offer(w, pub("e", 0), {0, 0}, handed) == publish_window::verdict::wait);
    CHECK(offer(w, pub("f", 1), {0, 0}, handed) == publish_window::verdict::wait);
    CHECK(offer(w, pub("g", 0), {0, 0}, handed) == publish_window::verdict::wait);
    CHECK(w.stats({0, 0}).waiting == 4);
    // "c" written: room in the window, none at the broker: the oldest QoS 0 goes.
    release(w, {1, 0}, handed);
    CHECK(handed == std::vector<std::string>{"a", "c", "d", "e"});
    // "a" answered and "d" written: room for two, and "b" is older than "g".
    release(w, {3, 1}, handed);
    CHECK(handed == std::vector<std::string>{"a", "c", "d", "e", "b", "g"});
    // A lost connection hands back what waits in the order it came, across both queues.
    CHECK(offer(w, pub("h", 0), {3, 1}, handed) == publish_window::verdict::wait);
    CHECK(offer(w, pub("i", 2), {3, 1}, handed) == publish_window::verdict::wait);
    CHECK(offer(w, pub("j", 0), {3, 1}, handed) == publish_window::verdict::wait);
    std::vector<std::string> back;
    for (const publish_upstream& r : w.take_waiting())
        back.push_back(r.payload);
    CHECK(back == std::vector<std::string>{"f", "h", "i", "j"});
    CHECK_FALSE(w.has_waiting());
    CHECK(w.stats({3, 1}).waiting_bytes == 0);
}
