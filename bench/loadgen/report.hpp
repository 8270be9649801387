// The output: json_out, a small writer of the one JSON object the load generator prints (numbers,
// strings, booleans, nested objects, latency histograms in microseconds). Used by the
// controller (main.cpp) once the shards have stopped.
#pragma once

#include <sstream>
#include <string>

#include "../common/bench_common.hpp"

namespace bench {

struct json_out {
    std::ostringstream o;
    bool first = true;
    void key(const char* k);
    void open(const char* k);
    void close();
    void num(const char* k, double v);  // null if not finite
    void str(const char* k, const std::string& v);
    void boolean(const char* k, bool v);
    void hist_us(const char* k, const histogram& h);  // count, percentiles, max, mean
};

}  // namespace bench
