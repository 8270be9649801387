// Pieces shared by the benchmark programs (mqttws-loadgen and mqttws-b1): the clock, the
// benchmark payload (publisher index, sequence number and send time embedded in fixed-size
// ASCII), base64 and SHA-1 for the WebSocket handshake, and a log-linear latency histogram.
//
// Thread safety: free functions are reentrant; a histogram is owned by one thread and merged
// by the owner after the threads have stopped.
#pragma once

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

// CLOCK_MONOTONIC in ns. Publisher and subscriber run on the same machine (often in the same
// process), so a send time embedded in a payload is comparable with the receive time.
inline std::uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

// ---- payload ------------------------------------------------------------------------------
// "BNCH" + publisher (8 hex) + seq (16 hex) + send_ns (16 hex), padded with 'x' to the chosen
// size. Plain ASCII and not JSON text, so mqttws and the node bridge deliver it as a JSON
// string, byte for byte, and a reader can find it with one memmem.
constexpr std::size_t payload_header_size = 44;
constexpr char payload_magic[4] = {'B', 'N', 'C', 'H'};

inline void put_hex(char* out, std::uint64_t v, int digits) {
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; --i) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
}

inline bool get_hex(const char* in, int digits, std::uint64_t& v) {
    std::uint64_t r = 0;
    for (int i = 0; i < digits; ++i) {
        const unsigned char c = static_cast<unsigned char>(in[i]);
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return false;
        r = (r << 4) | d;
    }
    v = r;
    return true;
}

// Writes the header part only; the padding is written once by fill_payload_padding.
inline void stamp_payload(char* out, std::uint32_t pub, std::uint64_t seq, std::uint64_t send_ns) {
    std::memcpy(out, payload_magic, 4);
    put_hex(out + 4, pub, 8);
    put_hex(out + 12, seq, 16);
    put_hex(out + 28, send_ns, 16);
}

inline std::string make_payload(std::size_t size) {
    std::string p(std::max(size, payload_header_size), 'x');
    stamp_payload(p.data(), 0, 0, 0);
    return p;
}

struct payload_fields {
    std::uint32_t pub = 0;
    std::uint64_t seq = 0;
    std::uint64_t send_ns = 0;
};

// Finds the payload header in [p, p+n) and decodes it.
inline bool find_payload(const char* p, std::size_t n, payload_fields& out) {
    const void* m = memmem(p, n, payload_magic, 4);
    if (m == nullptr) return false;
    const char* h = static_cast<const char*>(m);
    if (static_cast<std::size_t>(p + n - h) < payload_header_size) return false;
    std::uint64_t pub = 0;
    if (!get_hex(h + 4, 8, pub) || !get_hex(h + 12, 16, out.seq) ||
        !get_hex(h + 28, 16, out.send_ns))
        return false;
    out.pub = static_cast<std::uint32_t>(pub);
    return true;
}

// ---- base64 / SHA-1 (WebSocket handshake only) --------------------------------------------
inline std::string base64(const unsigned char* d, std::size_t n) {
    static constexpr char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < n; i += 3) {
        std::uint32_t v = static_cast<std::uint32_t>(d[i]) << 16;
        if (i + 1 < n) v |= static_cast<std::uint32_t>(d[i + 1]) << 8;
        if (i + 2 < n) v |= d[i + 2];
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out += i + 2 < n ? tbl[v & 63] : '=';
    }
    return out;
}

inline std::array<unsigned char, 20> sha1(std::string_view msg) {
    std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    std::string m(msg);
    const std::uint64_t bits = static_cast<std::uint64_t>(msg.size()) * 8;
    m += static_cast<char>(0x80);
    while (m.size() % 64 != 56)
        m += '\0';
    for (int i = 7; i >= 0; --i)
        m += static_cast<char>((bits >> (i * 8)) & 0xFF);
    auto rol = [](std::uint32_t x, int s) { return (x << s) | (x >> (32 - s)); };
    for (std::size_t off = 0; off < m.size(); off += 64) {
        std::uint32_t w[80];
        for (int i = 0; i < 16; ++i) {
            const auto* b = reinterpret_cast<const unsigned char*>(m.data() + off + 4 * i);
            w[i] = (static_cast<std::uint32_t>(b[0]) << 24) |
                   (static_cast<std::uint32_t>(b[1]) << 16) |
                   (static_cast<std::uint32_t>(b[2]) << 8) | b[3];
        }
        for (int i = 16; i < 80; ++i)
            w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; ++i) {
            std::uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDC;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6;
            }
            const std::uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    std::array<unsigned char, 20> out{};
    for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 4; ++j)
            out[4 * i + j] = static_cast<unsigned char>((h[i] >> (24 - 8 * j)) & 0xFF);
    return out;
}

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2).
inline std::string websocket_accept(std::string_view key) {
    std::string s(key);
    s += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    const auto d = sha1(s);
    return base64(d.data(), d.size());
}

// ---- histogram ------------------------------------------------------------------------------
// Log-linear histogram of non-negative integers (ns), in the spirit of HdrHistogram: values
// below 128 are exact; above, each power of two is split into 64 linear sub-buckets, so a
// recorded value is reported within 1/64 (1.6 %) of itself. Covers up to 2^44 ns (~4.9 h).
class histogram {
  public:
    static constexpr int sub_bits = 6;                      // 64 sub-buckets per octave
    static constexpr std::uint64_t exact = 2u << sub_bits;  // 128 exact values
    static constexpr int max_shift = 38;
    static constexpr std::size_t bucket_count = exact + max_shift * (1u << sub_bits);

    histogram() : counts_(bucket_count, 0) {}

    static std::size_t index_of(std::uint64_t v) {
        if (v < exact) return static_cast<std::size_t>(v);
        const int msb = 63 - __builtin_clzll(v);
        int shift = msb - sub_bits;  // >= 1
        if (shift > max_shift) {
            shift = max_shift;
            v = (((1ull << (sub_bits + 1)) - 1) << shift);
        }
        const std::uint64_t sub = v >> shift;  // in [64, 128)
        return exact + static_cast<std::size_t>(shift - 1) * (1u << sub_bits) +
               static_cast<std::size_t>(sub - (1u << sub_bits));
    }
    // Highest value that maps to bucket i (reported for percentiles: errs on the high side).
    static std::uint64_t value_of(std::size_t i) {
        if (i < exact) return i;
        const std::size_t j = i - exact;
        const int shift = static_cast<int>(j >> sub_bits) + 1;
        const std::uint64_t sub = (j & ((1u << sub_bits) - 1)) + (1u << sub_bits);
        return ((sub + 1) << shift) - 1;
    }

    void record(std::uint64_t v) {
        ++counts_[index_of(v)];
        ++total_;
        sum_ += v;
        if (v > max_) max_ = v;
        if (v < min_) min_ = v;
    }
    void merge(const histogram& o) {
        for (std::size_t i = 0; i < bucket_count; ++i)
            counts_[i] += o.counts_[i];
        total_ += o.total_;
        sum_ += o.sum_;
        max_ = std::max(max_, o.max_);
        min_ = std::min(min_, o.min_);
    }
    std::uint64_t count() const { return total_; }
    std::uint64_t max() const { return total_ ? max_ : 0; }
    std::uint64_t min() const { return total_ ? min_ : 0; }
    double mean() const {
        return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0;
    }
    // q in [0, 1]; the smallest bucket value with at least q of the samples at or below it.
    std::uint64_t percentile(double q) const {
        if (total_ == 0) return 0;
        std::uint64_t want = static_cast<std::uint64_t>(q * static_cast<double>(total_) + 0.5);
        if (want < 1) want = 1;
        if (want > total_) want = total_;
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += counts_[i];
            if (seen >= want) return std::min(value_of(i), max_);
        }
        return max_;
    }

  private:
    std::vector<std::uint64_t> counts_;
    std::uint64_t total_ = 0;
    std::uint64_t sum_ = 0;
    std::uint64_t max_ = 0;
    std::uint64_t min_ = ~0ull;
};

}  // namespace bench
