// Unit tests for io/read_pauses: a pause is applied once, at the connection's next message;
// reading resumes only when no reason holds and only if the pause had been applied.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "io/read_pauses.hpp"

using namespace mqttws;

TEST_CASE("read_pauses: nothing asked, nothing to apply or resume") {
    read_pauses p;
    CHECK_FALSE(p.apply_now(1));
    CHECK_FALSE(p.lift(1, read_pauses::for_engine));
    CHECK(p.paused_for(read_pauses::for_engine).empty());
}

TEST_CASE("read_pauses: a pause is applied once, at the next message, and lifting it resumes") {
    read_pauses p;
    p.ask(7, read_pauses::for_engine);
    CHECK_FALSE(p.apply_now(8));  // another connection's message
    CHECK(p.apply_now(7));
    CHECK_FALSE(p.apply_now(7));  // websocketpp was told already
    p.ask(7, read_pauses::for_engine);
    CHECK_FALSE(p.apply_now(7));  // asked again while applied: nothing new to tell
    CHECK(p.lift(7, read_pauses::for_engine));
    CHECK_FALSE(p.apply_now(7));                      // reading again
    CHECK_FALSE(p.lift(7, read_pauses::for_engine));  // a second resume would start a second read
}

TEST_CASE("read_pauses: lifted before the next message, a pause never applies, needs no resume") {
    read_pauses p;
    p.ask(3, read_pauses::for_app);
    CHECK_FALSE(p.lift(3, read_pauses::for_app));  // websocketpp still reads: nothing to resume
    CHECK_FALSE(p.apply_now(3));
}

TEST_CASE("read_pauses: with two reasons, reading resumes only when both are lifted") {
    read_pauses p;
    p.ask(5, read_pauses::for_engine);
    p.ask(5, read_pauses::for_app);
    CHECK(p.apply_now(5));
    CHECK_FALSE(p.lift(5, read_pauses::for_engine));
    CHECK_FALSE(p.apply_now(5));                      // still paused, still applied
    CHECK_FALSE(p.lift(5, read_pauses::for_engine));  // a reason not held changes nothing
    CHECK(p.lift(5, read_pauses::for_app));
}

TEST_CASE("read_pauses: lifting a reason that does not hold keeps the other") {
    read_pauses p;
    p.ask(5, read_pauses::for_app);
    CHECK_FALSE(p.lift(5, read_pauses::for_engine));
    CHECK(p.apply_now(5));
    CHECK(p.lift(5, read_pauses::for_engine | read_pauses::for_app));  // a close lifts both
}

TEST_CASE("read_pauses: paused_for lists the connections held by that reason") {
    read_pauses p;
    p.ask(1, read_pauses::for_engine);
    p.ask(2, read_pauses::for_app);
    p.ask(3, read_pauses::for_engine);
    p.ask(3, read_pauses::for_app);
    std::vector<connection_id> engine = p.paused_for(read_pauses::for_engine);
    std::sort(engine.begin(), engine.end());
    CHECK(engine == std::vector<connection_id>{1, 3});
    CHECK(p.paused_for(read_pauses::for_app).size() == 2);
}

TEST_CASE("read_pauses: a closed connection is forgotten") {
    read_pauses p;
    p.ask(9, read_pauses::for_engine);
    CHECK(p.apply_now(9));
    p.forget(9);
    CHECK_FALSE(p.lift(9, read_pauses::for_engine));
    CHECK(p.paused_for(read_pauses::for_engine).empty());
}
