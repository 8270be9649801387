// broker_hub: several engine shards behind one upstream connection. Each test plays the shards'
// actions and the broker's answers, and checks what goes upstream and what each shard is handed.
#include <doctest/doctest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/broker_hub.hpp"

using namespace mqttws;

namespace {

constexpr std::size_t store_bytes = 1 << 20;

struct hub_fixture {
    explicit hub_fixture(std::size_t shards = 3, bool persistent = false)
        : hub(shards, store_bytes, persistent) {
        hub.upstream_connected(false, logs, to_shards);
        to_shards.clear();
    }

    // Shard `from` subscribes `filter` under its operation `op` and subscription id `id`.
    void subscribe(shard_index from, op_id op, const std::string& filter, std::uint8_t qos,
                   std::uint32_t id, bool replay = true) {
        hub.from_shard(from, subscribe_upstream{op, filter, qos, id, replay, true}, upstream,
                       to_shards);
    }
    void unsubscribe(shard_index from, const std::string& filter) {
        hub.from_shard(from, unsubscribe_upstream{0, filter}, upstream, to_shards);
    }
    void publish(shard_index from, op_id op, const std::string& topic, std::uint8_t qos,
                 bool retain = false) {
        publish_upstream p;
        p.op = op;
        p.topic = topic;
        p.payload = "p:" + topic;
        p.qos = qos;
        p.retain = retain;
        hub.from_shard(from, p, upstream, to_shards);
    }
    void broker_sends(const std::string& topic, std::vector<std::uint32_t> ids,
                      bool retained = false, std::string payload = "x") {
        auto m = std::make_shared<broker_message>();
        m->topic = topic;
        m->payload = std::move(payload);
        m->qos = 1;
        m->retained = retained;
        m->subscription_ids = std::move(ids);
        hub.upstream_message(m, to_shards);
    }

    // The upstream actions of one kind, taken out of `upstream`.
    template <class A>
    std::vector<A> take_upstream() {
        std::vector<A> found;
        for (auto& a : upstream) {
            if (auto* x = std::get_if<A>(&a)) found.push_back(*x);
        }
        upstream.clear();
        return found;
    }
    // The one SUBSCRIBE that went upstream since the last look.
    subscribe_upstream sent_subscribe() {
        const auto subs = take_upstream<subscribe_upstream>();
        REQUIRE(subs.size() == 1);
        return subs[0];
    }
    void confirm(const subscribe_upstream& s, int granted) {
        hub.upstream_subscribed(s.op, granted, to_shards);
    }
    // What shard `k` was handed of one kind, in order, taken out of `to_shards`.
    template <class E>
    std::vector<E> handed(shard_index k) {
        std::vector<E> found;
        for (auto& d : to_shards) {
            if (d.shard != k) continue;
            if (auto* e = std::get_if<E>(&d.event)) found.push_back(*e);
        }
        return found;
    }

    broker_hub hub;
    action_list upstream;
    action_list logs;  // what the hub logs (the connection's return and loss)
    shard_deliveries to_shards;
};

}  // namespace

TEST_CASE("broker_hub: one upstream SUBSCRIBE per filter; its SUBACK answers every shard waiting") {
    hub_fixture t;
    t.subscribe(0, 10, "a/#", 0, 1);
    t.subscribe(2, 20, "a/#", 0, 7);
    const subscribe_upstream sub = t.sent_subscribe();
    CHECK(sub.filter == "a/#");
    CHECK(sub.replay_retained);
    CHECK(sub.no_local);
    CHECK(sub.subscription_id != 0);
    CHECK(t.to_shards.empty());  // nobody is answered before the broker
    CHECK(t.hub.holders("a/#") == 2);

    t.confirm(sub, 0);
    const auto a0 = t.handed<shard_subscribed>(0);
    const auto a2 = t.handed<shard_subscribed>(2);
    REQUIRE(a0.size() == 1);
    REQUIRE(a2.size() == 1);
    CHECK(a0[0].op == 10);
    CHECK(a2[0].op == 20);
    CHECK(a0[0].granted == 0);
    CHECK(t.handed<shard_subscribed>(1).empty());
    CHECK(t.handed<shard_message>(0).empty());  // the broker replays retained messages itself

    SUBCASE("a shard joining later is answered at once, without a SUBSCRIBE") {
        t.to_shards.clear();
        t.subscribe(1, 30, "a/#", 0, 4);
        CHECK(t.take_upstream<subscribe_upstream>().empty());
        const auto a1 = t.handed<shard_subscribed>(1);
        REQUIRE(a1.size() == 1);
        CHECK(a1[0].op == 30);
    }
    SUBCASE("the last shard leaving unsubscribes, once") {
        t.unsubscribe(0, "a/#");
        CHECK(t.take_upstream<unsubscribe_upstream>().empty());
        CHECK(t.hub.holders("a/#") == 1);
        t.unsubscribe(2, "a/#");
        const auto unsubs = t.take_upstream<unsubscribe_upstream>();
        REQUIRE(unsubs.size() == 1);
        CHECK(unsubs[0].filter == "a/#");
        CHECK(t.hub.filter_count() == 0);
        // Held again: a new SUBSCRIBE, which replays.
        t.subscribe(1, 40, "a/#", 0, 5);
        const subscribe_upstream again = t.sent_subscribe();
        CHECK(again.replay_retained);
    }
}

TEST_CASE(
    "broker_hub: a broker message goes, shared, only to the shards holding its filter, with "
    "their ids") {
    hub_fixture t;
    t.subscribe(0, 1, "a/+", 1, 11);
    t.subscribe(1, 2, "a/+", 1, 21);
    t.subscribe(1, 3, "a/b", 1, 22);
    auto subs = t.take_upstream<subscribe_upstream>();
    REQUIRE(subs.size() == 2);
    for (const auto& s : subs)
        t.confirm(s, 1);
    const std::uint32_t plus_id =
        subs[0].filter == "a/+" ? subs[0].subscription_id : subs[1].subscription_id;
    const std::uint32_t exact_id =
        subs[0].filter == "a/b" ? subs[0].subscription_id : subs[1].subscription_id;
    t.to_shards.clear();

    t.broker_sends("a/b", {plus_id});
    auto m0 = t.handed<shard_message>(0);
    auto m1 = t.handed<shard_message>(1);
    REQUIRE(m0.size() == 1);
    REQUIRE(m1.size() == 1);
    CHECK(m0[0].subscription_ids == std::vector<std::uint32_t>{11});
    CHECK(m1[0].subscription_ids == std::vector<std::uint32_t>{21});
    CHECK(m0[0].message.get() == m1[0].message.get());  // decoded once, shared
    CHECK_FALSE(m0[0].local);
    CHECK(t.handed<shard_message>(2).empty());

    t.to_shards.clear();
    t.broker_sends("a/b", {exact_id});  // the copy for "a/b": only shard 1 holds it
    CHECK(t.handed<shard_message>(0).empty());
    m1 = t.handed<shard_message>(1);
    REQUIRE(m1.size() == 1);
    CHECK(m1[0].subscription_ids == std::vector<std::uint32_t>{22});

    t.to_shards.clear();
    t.broker_sends("a/b", {plus_id, exact_id});  // one copy for both filters
    m1 = t.handed<shard_message>(1);
    REQUIRE(m1.size() == 1);
    CHECK(m1[0].subscription_ids == std::vector<std::uint32_t>{21, 22});
    CHECK(t.handed<shard_message>(0).size() == 1);
}

TEST_CASE("broker_hub: a shard joining a held filter gets its retained messages from the store") {
    hub_fixture t;
    t.subscribe(0, 1, "r/#", 1, 3);
    const subscribe_upstream sub = t.sent_subscribe();
    t.confirm(sub, 1);
    const std::uint32_t id = sub.subscription_id;
    t.broker_sends("r/1", {id}, true, "one");
    t.broker_sends("r/2", {id}, true, "two");
    t.broker_sends("r/2", {id}, true, "");  // deletes r/2
    t.broker_sends("r/3", {id}, false, "live");
    CHECK(t.hub.retained_count() == 1);
    t.to_shards.clear();

    t.subscribe(1, 50, "r/#", 1, 9);
    CHECK(t.take_upstream<subscribe_upstream>().empty());
    REQUIRE(t.to_shards.size() == 2);
    // The answer first, then the replay: as a broker sends them.
    const auto* answer = std::get_if<shard_subscribed>(&t.to_shards[0].event);
    REQUIRE(answer != nullptr);
    CHECK(answer->op == 50);
    const auto* replay = std::get_if<shard_message>(&t.to_shards[1].event);
    REQUIRE(replay != nullptr);
    CHECK(t.to_shards[1].shard == 1);
    CHECK(replay->message->topic == "r/1");
    CHECK(replay->message->payload == "one");
    CHECK(replay->message->retained);
    CHECK(replay->subscription_ids == std::vector<std::uint32_t>{9});

    SUBCASE("not when it asks for no replay (a QoS change)") {
        t.to_shards.clear();
        t.subscribe(2, 60, "r/#", 0, 4, /*replay=*/false);
        REQUIRE(t.handed<shard_subscribed>(2).size() == 1);
        CHECK(t.handed<shard_message>(2).empty());
    }
    SUBCASE("the last shard leaving drops the store's topics under the filter") {
        t.unsubscribe(0, "r/#");
        t.unsubscribe(1, "r/#");
        CHECK(t.hub.retained_count() == 0);
    }
}

TEST_CASE("broker_hub: a higher QoS subscribes again without a replay; the joiner waits for it") {
    hub_fixture t;
    t.subscribe(0, 1, "q", 0, 1);
    const subscribe_upstream sub = t.sent_subscribe();
    CHECK(sub.qos == 0);
    t.confirm(sub, 0);
    t.broker_sends("q", {sub.subscription_id}, true, "kept");
    t.to_shards.clear();

    t.subscribe(1, 2, "q", 2, 8);
    const subscribe_upstream raise = t.sent_subscribe();
    CHECK(raise.qos == 2);
    CHECK_FALSE(raise.replay_retained);
    CHECK(raise.subscription_id == sub.subscription_id);  // the same subscription
    CHECK(t.to_shards.empty());

    // A third shard at QoS 1 needs no SUBSCRIBE of its own, but waits for the one on its way.
    t.subscribe(2, 3, "q", 1, 5);
    CHECK(t.take_upstream<subscribe_upstream>().empty());
    CHECK(t.to_shards.empty());

    t.confirm(raise, 2);
    REQUIRE(t.handed<shard_subscribed>(1).size() == 1);
    CHECK(t.handed<shard_subscribed>(1)[0].granted == 2);
    REQUIRE(t.handed<shard_subscribed>(2).size() == 1);
    CHECK(t.handed<shard_subscribed>(0).empty());  // it had its answer
    // Both joiners get the retained message from the store; the first shard has it already.
    REQUIRE(t.handed<shard_message>(1).size() == 1);
    CHECK(t.handed<shard_message>(1)[0].message->payload == "kept");
    REQUIRE(t.handed<shard_message>(2).size() == 1);
    CHECK(t.handed<shard_message>(0).empty());
}

TEST_CASE("broker_hub: a refused first SUBSCRIBE drops the filter for every shard waiting") {
    hub_fixture t;
    t.subscribe(0, 1, "secret/#", 1, 1);
    t.subscribe(1, 2, "secret/#", 1, 1);
    const subscribe_upstream sub = t.sent_subscribe();
    t.confirm(sub, 0x87);
    REQUIRE(t.handed<shard_subscribed>(0).size() == 1);
    CHECK(t.handed<shard_subscribed>(0)[0].granted == 0x87);
    REQUIRE(t.handed<shard_subscribed>(1).size() == 1);
    CHECK(t.hub.filter_count() == 0);
    // The shards drop it without unsubscribing (engine: broker_refused); a new subscriber asks
    // the broker again.
    t.subscribe(1, 3, "secret/#", 1, 2);
    CHECK(t.take_upstream<subscribe_upstream>().size() == 1);
}

TEST_CASE("broker_hub: publishes go upstream under the hub's ids, and their answers back") {
    hub_fixture t;
    t.publish(1, 77, "t", 1);
    t.publish(2, 77, "t", 1);  // shards number their operations independently
    auto pubs = t.take_upstream<publish_upstream>();
    REQUIRE(pubs.size() == 2);
    CHECK(pubs[0].op != pubs[1].op);
    CHECK(pubs[0].payload == "p:t");

    t.hub.upstream_published(pubs[1].op, errc::forbidden, "refused", t.to_shards);
    REQUIRE(t.handed<shard_published>(2).size() == 1);
    CHECK(t.handed<shard_published>(2)[0].op == 77);
    CHECK(t.handed<shard_published>(2)[0].error == errc::forbidden);
    CHECK(t.handed<shard_published>(2)[0].message == "refused");
    CHECK(t.handed<shard_published>(1).empty());
    t.hub.upstream_published(pubs[0].op, std::nullopt, "", t.to_shards);
    REQUIRE(t.handed<shard_published>(1).size() == 1);
    CHECK_FALSE(t.handed<shard_published>(1)[0].error);
    t.to_shards.clear();
    t.hub.upstream_published(pubs[0].op, std::nullopt, "", t.to_shards);  // answered already
    CHECK(t.to_shards.empty());
}

TEST_CASE(
    "broker_hub: local fan-out reaches the other shards holding a match, QoS 0 at once, "
    "QoS 1 once accepted") {
    hub_fixture t;
    t.subscribe(0, 1, "s/#", 1, 1);
    t.subscribe(1, 2, "s/+", 1, 1);
    for (const auto& s : t.take_upstream<subscribe_upstream>())
        t.confirm(s, 1);
    t.to_shards.clear();

    // QoS 0 from shard 0: shard 1 at once; not shard 0 (it delivers its own), not shard 2.
    t.publish(0, 5, "s/x", 0);
    REQUIRE(t.take_upstream<publish_upstream>().size() == 1);
    CHECK(t.handed<shard_message>(0).empty());
    CHECK(t.handed<shard_message>(2).empty());
    auto local = t.handed<shard_message>(1);
    REQUIRE(local.size() == 1);
    CHECK(local[0].local);
    CHECK(local[0].subscription_ids.empty());
    CHECK(local[0].message->topic == "s/x");
    CHECK(local[0].message->payload == "p:s/x");
    t.to_shards.clear();

    // QoS 1 from shard 2: nothing until the broker accepts, then shards 0 and 1.
    t.publish(2, 6, "s/y", 1);
    auto pubs = t.take_upstream<publish_upstream>();
    REQUIRE(pubs.size() == 1);
    CHECK(t.to_shards.empty());
    t.hub.upstream_published(pubs[0].op, std::nullopt, "", t.to_shards);
    CHECK(t.handed<shard_message>(0).size() == 1);
    CHECK(t.handed<shard_message>(1).size() == 1);
    CHECK(t.handed<shard_message>(2).empty());
    CHECK(t.handed<shard_published>(2).size() == 1);
    t.to_shards.clear();

    // Refused: no shard shows it.
    t.publish(2, 7, "s/z", 1);
    pubs = t.take_upstream<publish_upstream>();
    REQUIRE(pubs.size() == 1);
    t.hub.upstream_published(pubs[0].op, errc::forbidden, "no", t.to_shards);
    CHECK(t.handed<shard_message>(0).empty());
    CHECK(t.handed<shard_message>(1).empty());

    // Deeper than "s/+": only shard 0's "s/#" matches.
    t.to_shards.clear();
    t.publish(2, 8, "s/a/b", 0);
    CHECK(t.handed<shard_message>(0).size() == 1);
    CHECK(t.handed<shard_message>(1).empty());
}

TEST_CASE("broker_hub: a retained local publish updates the store for later joiners") {
    hub_fixture t;
    t.subscribe(0, 1, "st/#", 1, 1);
    const subscribe_upstream sub = t.sent_subscribe();
    t.confirm(sub, 1);
    t.publish(0, 2, "st/a", 0, /*retain=*/true);
    t.publish(0, 3, "other", 0, /*retain=*/true);  // under no held filter: not stored
    CHECK(t.hub.retained_count() == 1);
    t.to_shards.clear();
    t.subscribe(1, 4, "st/#", 1, 6);
    const auto replay = t.handed<shard_message>(1);
    REQUIRE(replay.size() == 1);
    CHECK(replay[0].message->topic == "st/a");
    CHECK(replay[0].message->payload == "p:st/a");
}

TEST_CASE(
    "broker_hub: the connection's loss and return reach every shard; each filter is "
    "subscribed again once") {
    hub_fixture t;
    t.subscribe(0, 1, "c", 1, 1);
    t.subscribe(1, 2, "c", 1, 1);
    const subscribe_upstream sub = t.sent_subscribe();
    t.confirm(sub, 1);
    t.to_shards.clear();

    t.hub.upstream_lost("gone", t.logs, t.to_shards);
    for (shard_index k = 0; k < 3; ++k) {
        REQUIRE(t.handed<shard_lost>(k).size() == 1);
        CHECK(t.handed<shard_lost>(k)[0].reason == "gone");
    }
    t.to_shards.clear();

    SUBCASE("a new broker session: each filter is subscribed again once, under its id") {
        t.hub.upstream_connected(false, t.logs, t.to_shards);
        for (shard_index k = 0; k < 3; ++k) {
            REQUIRE(t.handed<shard_connected>(k).size() == 1);
            CHECK_FALSE(t.handed<shard_connected>(k)[0].session_present);
        }
        CHECK(t.hub.holders("c") == 2);
        // Messages may come before the SUBSCRIBE: they still reach the holders.
        t.to_shards.clear();
        t.broker_sends("c", {sub.subscription_id});
        CHECK(t.handed<shard_message>(0).size() == 1);
        CHECK(t.handed<shard_message>(1).size() == 1);
        t.subscribe(0, 3, "c", 1, 1);
        t.subscribe(1, 4, "c", 1, 1);
        const subscribe_upstream again = t.sent_subscribe();
        CHECK(again.replay_retained);
        CHECK(again.subscription_id == sub.subscription_id);
        t.to_shards.clear();
        t.confirm(again, 1);
        CHECK(t.handed<shard_subscribed>(0).size() == 1);
        CHECK(t.handed<shard_subscribed>(1).size() == 1);
    }
    SUBCASE("a shard that releases a filter while the connection is down: no UNSUBSCRIBE") {
        t.unsubscribe(0, "c");
        t.unsubscribe(1, "c");
        CHECK(t.take_upstream<unsubscribe_upstream>().empty());
        CHECK(t.hub.filter_count() == 0);
    }
    SUBCASE("a SUBACK from before the loss answers nobody") {
        t.hub.upstream_connected(false, t.logs, t.to_shards);
        t.to_shards.clear();
        t.confirm(sub, 1);
        CHECK(t.to_shards.empty());
    }
}

TEST_CASE("broker_hub: with a persistent session the broker keeps the filters across a loss") {
    hub_fixture t(2, /*persistent=*/true);
    t.subscribe(0, 1, "p", 1, 1);
    const subscribe_upstream sub = t.sent_subscribe();
    t.confirm(sub, 1);
    t.logs.clear();
    t.hub.upstream_lost("gone", t.logs, t.to_shards);
    t.hub.upstream_connected(true, t.logs, t.to_shards);
    t.to_shards.clear();
    REQUIRE(t.logs.size() == 2);
    CHECK(std::get<log_line>(t.logs[0]).text == "upstream connection lost: gone");
    CHECK(std::get<log_line>(t.logs[1]).text ==
          "upstream connected (session kept), 1 filters held");
    CHECK(t.hub.holders("p") == 1);
    // Still confirmed: a joining shard is answered without a SUBSCRIBE.
    t.subscribe(1, 2, "p", 1, 4);
    CHECK(t.take_upstream<subscribe_upstream>().empty());
    CHECK(t.handed<shard_subscribed>(1).size() == 1);
    // Messages still carry the subscription id of before.
    t.broker_sends("p", {sub.subscription_id});
    CHECK(t.handed<shard_message>(0).size() == 1);
    CHECK(t.handed<shard_message>(1).size() == 1);
}

TEST_CASE(
    "broker_hub: a message for no held filter (queued before a restart) goes to every shard "
    "under an id no filter has") {
    hub_fixture t(2);
    t.broker_sends("old/topic", {42});
    for (shard_index k = 0; k < 2; ++k) {
        const auto m = t.handed<shard_message>(k);
        REQUIRE(m.size() == 1);
        CHECK(m[0].subscription_ids == std::vector<std::uint32_t>{broker_hub::no_filter});
        CHECK_FALSE(m[0].local);
    }
}

TEST_CASE("broker_hub: a device's presence on one shard goes to every other shard, in order") {
    hub_fixture t(3);
    t.hub.from_shard(1, device_presence{"lamp", true}, t.upstream, t.to_shards);
    t.hub.from_shard(1, device_presence{"lamp", false}, t.upstream, t.to_shards);
    CHECK(t.upstream.empty());  // nothing for the broker: the shard publishes the presence itself
    CHECK(t.handed<shard_presence>(1).empty());
    for (const shard_index k : {0, 2}) {
        const auto p = t.handed<shard_presence>(k);
        REQUIRE(p.size() == 2);
        CHECK(p[0].device == "lamp");
        CHECK(p[0].online);
        CHECK_FALSE(p[1].online);
    }
}

TEST_CASE("broker_hub: a session token tells its shard") {
    for (shard_index k : {0U, 7U, 12U}) {
        const std::string token = session_token_prefix(k) + "0123456789abcdef";
        REQUIRE(shard_of_session_token(token, 13).has_value());
        CHECK(*shard_of_session_token(token, 13) == k);
    }
    CHECK_FALSE(shard_of_session_token("12-abc", 12));           // no such shard
    CHECK_FALSE(shard_of_session_token("0123456789abcdef", 4));  // no prefix (one engine)
    CHECK_FALSE(shard_of_session_token("-abc", 4));
    CHECK_FALSE(shard_of_session_token("1x-abc", 4));
    CHECK_FALSE(shard_of_session_token("12345-abc", 4));
    CHECK_FALSE(shard_of_session_token("", 4));
}

TEST_CASE("broker_hub: each shard's configuration") {
    engine_config bridge;
    bridge.max_detached_sessions = 10;
    bridge.devices.bridge_status_topic = "bridges/b1/status";
    const engine_config first = config_for_shard(bridge, 0, 3);
    const engine_config third = config_for_shard(bridge, 2, 3);
    CHECK(first.auth.session_token_prefix == session_token_prefix(0));
    CHECK(third.auth.session_token_prefix == session_token_prefix(2));
    CHECK(first.behind_hub);
    CHECK(third.behind_hub);
    CHECK(first.shard == 0);
    CHECK(third.shard == 2);
    // One retained status for the bridge: shard 0's.
    CHECK(first.devices.bridge_status_topic == "bridges/b1/status");
    CHECK(third.devices.bridge_status_topic.empty());
    // The limit of detached sessions is the bridge's: the shards share one detached_sessions.
    CHECK(third.max_detached_sessions == bridge.max_detached_sessions);
}

TEST_CASE("broker_hub: the shard of a first auth: its session's, a device's by its id, else any") {
    auto auth = [](std::string client_id, bool device, std::string session = "") {
        auth_request r;
        r.client_id = std::move(client_id);
        r.is_device = device;
        r.session = std::move(session);
        return r;
    };
    // A resume: the shard its token names, device or not.
    CHECK(shard_for_auth(auth("dash", false, session_token_prefix(3) + "abcdef"), 4) == 3U);
    CHECK(shard_for_auth(auth("pump-1", true, session_token_prefix(2) + "abcdef"), 4) == 2U);
    // A client that is not a device: wherever it was accepted.
    CHECK_FALSE(shard_for_auth(auth("dash", false), 4));
    CHECK_FALSE(shard_for_auth(auth("dash", false, "0123456789abcdef"), 4));
    // A device: always the same shard for one id, and the ids spread over all shards.
    std::set<shard_index> seen;
    for (int i = 0; i < 64; ++i) {
        const std::string id = "pump-" + std::to_string(i);
        const auto k = shard_for_auth(auth(id, true), 4);
        REQUIRE(k.has_value());
        CHECK(*k < 4U);
        CHECK(shard_for_auth(auth(id, true), 4) == k);
        seen.insert(*k);
    }
    CHECK(seen.size() == 4);
    CHECK(shard_for_auth(auth("pump-1", true), 1) == 0U);
}
