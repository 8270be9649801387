// The idempotency store (core/idempotency.hpp): what a retry of a command is answered with, how
// it stays bounded while commands run long, and that two shards given one key at once run it
// once.
#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "core/idempotency.hpp"

using namespace mqttws;

namespace {

remembered_command running_on(std::size_t shard, std::uint64_t number, std::int64_t at) {
    remembered_command c;
    c.name = "unlock";
    c.targets.push_back(remembered_target{"door", command_state::queued, {}, {}});
    c.created_wall_ms = at;
    c.shard = shard;
    c.number = number;
    c.running = true;
    return c;
}

}  // namespace

TEST_CASE("idempotency store: the first try of a key is stored; a retry finds it") {
    idempotency_store store(10, 1000);
    CHECK_FALSE(store.find_or_put("k", running_on(0, 1, 0), 0));
    const auto again = store.find_or_put("k", running_on(1, 7, 10), 10);
    REQUIRE(again);
    CHECK(again->shard == 0);
    CHECK(again->number == 1);
    CHECK(again->running);
    // Past the window it is not found, and the key runs a new command.
    CHECK_FALSE(store.find("k", 1001));
}

TEST_CASE("idempotency store: only the command a key names updates it") {
    idempotency_store store(10, 1000);
    store.find_or_put("k", running_on(0, 1, 0), 0);
    remembered_command done = running_on(0, 1, 500);
    done.targets[0].state = command_state::succeeded;
    done.running = false;
    CHECK_FALSE(store.update("k", done).empty());
    const auto found = store.find("k", 600);
    REQUIRE(found);
    CHECK(found->targets[0].state == command_state::succeeded);
    CHECK(found->created_wall_ms == 0);  // when it was first stored
    // Another shard's command 1 is not this one.
    remembered_command other = running_on(1, 1, 600);
    CHECK(store.update("k", other).empty());
    CHECK(store.find("k", 600)->targets[0].state == command_state::succeeded);
}

TEST_CASE("idempotency store: a command running past the window is kept until it ends, then goes") {
    idempotency_store store(1, 1000);
    store.find_or_put("long", running_on(0, 1, 0), 0);
    store.expire(5000);
    CHECK(store.size() == 1);  // still running
    remembered_command over = running_on(0, 1, 5000);
    over.running = false;
    store.update("long", over);
    store.expire(5000);
    CHECK(store.size() == 0);
    // With a bound of one, the next key takes its place (and the store does not lose count).
    CHECK_FALSE(store.find_or_put("next", running_on(0, 2, 5000), 5000));
    CHECK(store.size() == 1);
    CHECK_FALSE(store.find_or_put("after", running_on(0, 3, 5001), 5001));
    CHECK(store.size() == 1);
    CHECK(store.find("after", 5001));
}

TEST_CASE("idempotency store: past its bound the oldest goes, even while it runs") {
    idempotency_store store(2, 1000);
    store.find_or_put("a", running_on(0, 1, 0), 0);
    store.find_or_put("b", running_on(0, 2, 1), 1);
    store.find_or_put("c", running_on(0, 3, 2), 2);
    CHECK(store.size() == 2);
    CHECK_FALSE(store.find("a", 2));
    // Its next step stores it anew (in place of the oldest then).
    CHECK_FALSE(store.update("a", running_on(0, 1, 3)).empty());
    CHECK(store.find("a", 3));
    CHECK_FALSE(store.find("b", 3));
    CHECK(store.size() == 2);
}

TEST_CASE("idempotency store: a command's end is kept only while its key still names it") {
    idempotency_store store(1, 1000);
    store.find_or_put("a", running_on(0, 1, 0), 0);
    store.finished("a", 1, 1);  // another shard's number 1
    CHECK(store.find("a", 1)->running);
    store.finished("a", 0, 1);
    CHECK_FALSE(store.find("a", 1)->running);
    // Evicted past the bound while it ran: its end does not store it again.
    store.find_or_put("b", running_on(0, 2, 2), 2);
    store.find_or_put("c", running_on(0, 3, 3), 3);
    store.finished("b", 0, 2);
    CHECK_FALSE(store.find("b", 3));
    CHECK(store.find("c", 3)->running);
    CHECK(store.size() == 1);
}

TEST_CASE("idempotency store: of threads given one key at once, exactly one runs the command") {
    constexpr int threads = 4;
    constexpr int keys = 1000;
    idempotency_store store(keys, 60000);
    std::atomic<int> first_tries{0};
    std::vector<std::thread> shards;
    for (int k = 0; k < threads; ++k) {
        shards.emplace_back([&, k] {
            for (int i = 0; i < keys; ++i) {
                const auto key = "key-" + std::to_string(i);
                if (!store.find_or_put(key, running_on(k, i + 1, 0), 0)) ++first_tries;
            }
        });
    }
    for (auto& t : shards)
        t.join();
    CHECK(first_tries.load() == keys);
    CHECK(store.size() == keys);
}
