// json_out: the writer of the load generator's JSON result (report.hpp).
#include "report.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace bench {

void json_out::key(const char* k) {
    if (!first) o << ',';
    first = false;
    o << '"' << k << "\":";
}

void json_out::open(const char* k) {
    key(k);
    o << '{';
    first = true;
}

void json_out::close() {
    o << '}';
    first = false;
}

void json_out::num(const char* k, double v) {
    key(k);
    if (!std::isfinite(v)) {
        o << "null";
        return;
    }
    char buf[64];
    if (v == std::floor(v) && std::fabs(v) < 9e15)
        std::snprintf(buf, sizeof buf, "%.0f", v);
    else
        std::snprintf(buf, sizeof buf, "%.4g", v);
    o << buf;
}

void json_out::str(const char* k, const std::string& v) {
    key(k);
    o << '"';
    for (char ch : v) {
        if (ch == '"' || ch == '\\')
            o << '\\' << ch;
        else if (static_cast<unsigned char>(ch) < 0x20)
            o << ' ';
        else
            o << ch;
    }
    o << '"';
}

void json_out::boolean(const char* k, bool v) {
    key(k);
    o << (v ? "true" : "false");
}

void json_out::hist_us(const char* k, const histogram& h) {
    open(k);
    num("count", static_cast<double>(h.count()));
    auto us = [](std::uint64_t ns) { return std::round(static_cast<double>(ns) / 100.0) / 10.0; };
    num("p50", us(h.percentile(0.50)));
    num("p90", us(h.percentile(0.90)));
    num("p99", us(h.percentile(0.99)));
    num("p999", us(h.percentile(0.999)));
    num("max", us(h.max()));
    num("mean", std::round(h.mean() / 100.0) / 10.0);
    close();
}

}  // namespace bench
