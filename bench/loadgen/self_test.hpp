// --self-test: the codecs (wire.hpp) and the histogram checked in isolation, then the shard
// machinery end to end against an in-process stand-in for mqttws (self_test.cpp).
#pragma once

namespace bench {

// Runs every check, prints "N passed, M failed" and returns the exit status (0: all passed).
int self_test();

}  // namespace bench
