// Wire codecs of the load generator, I/O-free so the self-test can check them:
// - RFC 6455 client frames (masked), among them the close frame a client ends with, and a
//   parser for server frames (7/16/64-bit lengths, masked or not, any opcode; the caller
//   handles fragmentation) with the status code of a close frame;
// - a minimal MQTT 3.1.1 codec: CONNECT, SUBSCRIBE, PUBLISH (QoS 0/1), PUBACK, PINGREQ,
//   DISCONNECT out;
//   a packet splitter for what comes back (CONNACK, SUBACK, PUBLISH, PUBACK, PINGRESP);
// - mqttws's binary publish frame (docs/protocol.md, "Binary frames"), for --binary-publish;
// - two scanners of the JSON frames of mqttws and the node bridge: the "type" and the numeric
//   "msgid" (the per-message path and the self-test's stand-in server).
//
// Thread safety: stateless functions; a mask_source belongs to one thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace bench {

// ---- WebSocket ------------------------------------------------------------------------------
namespace ws {

enum opcode : std::uint8_t {
    continuation = 0,
    text = 1,
    binary = 2,
    close = 8,
    ping = 9,
    pong = 10
};

// Masking keys: RFC 6455 wants them unpredictable to the network; a xorshift is plenty for a
// loopback benchmark and costs nothing.
struct mask_source {
    std::uint32_t state = 0x9E3779B9u;
    std::uint32_t next() {
        std::uint32_t x = state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return state = x;
    }
};

inline void apply_mask(char* p, std::size_t n, std::uint32_t key, std::size_t phase = 0) {
    unsigned char k[4];
    std::memcpy(k, &key, 4);
    std::uint64_t k8;
    unsigned char kk[8];
    for (int i = 0; i < 8; ++i)
        kk[i] = k[(i + phase) & 3];
    std::memcpy(&k8, kk, 8);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        w ^= k8;
        std::memcpy(p + i, &w, 8);
    }
    for (; i < n; ++i)
        p[i] = static_cast<char>(p[i] ^ kk[i & 7]);
}

// Appends the header of a final, masked client frame; returns the mask key. The caller then
// appends `len` payload bytes and masks them with apply_mask(key).
inline std::uint32_t append_client_header(std::string& out, opcode op, std::size_t len,
                                          mask_source& ms) {
    char h[14];
    std::size_t n = 0;
    h[n++] = static_cast<char>(0x80 | op);
    if (len < 126) {
        h[n++] = static_cast<char>(0x80 | len);
    } else if (len <= 0xFFFF) {
        h[n++] = static_cast<char>(0x80 | 126);
        h[n++] = static_cast<char>(len >> 8);
        h[n++] = static_cast<char>(len & 0xFF);
    } else {
        h[n++] = static_cast<char>(0x80 | 127);
        for (int s = 56; s >= 0; s -= 8)
            h[n++] = static_cast<char>((static_cast<std::uint64_t>(len) >> s) & 0xFF);
    }
    const std::uint32_t key = ms.next();
    std::memcpy(h + n, &key, 4);
    n += 4;
    out.append(h, n);
    return key;
}

inline void append_client_frame(std::string& out, opcode op, std::string_view payload,
                                mask_source& ms) {
    const std::uint32_t key = append_client_header(out, op, payload.size(), ms);
    const std::size_t at = out.size();
    out.append(payload);
    apply_mask(out.data() + at, payload.size(), key);
}

// A close frame (masked, as a client's must be): the status code, big-endian, then an optional
// UTF-8 reason (at most 123 bytes, so the frame stays a control frame of <= 125 bytes).
inline void append_client_close(std::string& out, std::uint16_t code, std::string_view reason,
                                mask_source& ms) {
    std::string body;
    body += static_cast<char>(code >> 8);
    body += static_cast<char>(code & 0xFF);
    body.append(reason.substr(0, 123));
    append_client_frame(out, close, body, ms);
}

struct frame {
    bool fin = false;
    opcode op = continuation;
    char* payload = nullptr;  // unmasked in place
    std::size_t length = 0;
    std::size_t consumed = 0;  // header + payload
};

enum class parse_result { ok, need_more, too_large, bad };

// Parses one frame at p[0..n). Unmasks a masked payload in place.
inline parse_result parse_frame(char* p, std::size_t n, std::size_t max_len, frame& f) {
    if (n < 2) return parse_result::need_more;
    const auto b0 = static_cast<unsigned char>(p[0]);
    const auto b1 = static_cast<unsigned char>(p[1]);
    if (b0 & 0x70) return parse_result::bad;  // no extension negotiated
    std::size_t hdr = 2;
    std::uint64_t len = b1 & 0x7F;
    if (len == 126) {
        if (n < 4) return parse_result::need_more;
        len = (static_cast<std::uint64_t>(static_cast<unsigned char>(p[2])) << 8) |
              static_cast<unsigned char>(p[3]);
        hdr = 4;
    } else if (len == 127) {
        if (n < 10) return parse_result::need_more;
        len = 0;
        for (int i = 0; i < 8; ++i)
            len = (len << 8) | static_cast<unsigned char>(p[2 + i]);
        hdr = 10;
    }
    const bool masked = (b1 & 0x80) != 0;
    if (len > max_len) return parse_result::too_large;
    if (n < hdr + (masked ? 4 : 0) + len) return parse_result::need_more;
    f.fin = (b0 & 0x80) != 0;
    f.op = static_cast<opcode>(b0 & 0x0F);
    f.length = static_cast<std::size_t>(len);
    if (masked) {
        std::uint32_t key;
        std::memcpy(&key, p + hdr, 4);
        hdr += 4;
        apply_mask(p + hdr, f.length, key);
    }
    f.payload = p + hdr;
    f.consumed = hdr + f.length;
    return parse_result::ok;
}

// The status code of a close frame's payload: 1005 ("no status") when it carries none.
inline std::uint16_t close_code(const frame& f) {
    if (f.op != close || f.length < 2) return 1005;
    return static_cast<std::uint16_t>((static_cast<unsigned char>(f.payload[0]) << 8) |
                                      static_cast<unsigned char>(f.payload[1]));
}

}  // namespace ws

// ---- MQTT 3.1.1 -----------------------------------------------------------------------------
namespace mqtt {

inline void append_remaining_length(std::string& out, std::size_t len) {
    do {
        unsigned char b = len & 0x7F;
        len >>= 7;
        if (len) b |= 0x80;
        out += static_cast<char>(b);
    } while (len);
}

inline void append_u16(std::string& out, std::uint16_t v) {
    out += static_cast<char>(v >> 8);
    out += static_cast<char>(v & 0xFF);
}

inline void append_str(std::string& out, std::string_view s) {
    append_u16(out, static_cast<std::uint16_t>(s.size()));
    out.append(s);
}

inline std::string connect_packet(std::string_view client_id, std::uint16_t keepalive_s) {
    std::string body;
    append_str(body, "MQTT");
    body += static_cast<char>(4);     // protocol level 3.1.1
    body += static_cast<char>(0x02);  // clean session
    append_u16(body, keepalive_s);
    append_str(body, client_id);
    std::string out(1, static_cast<char>(0x10));
    append_remaining_length(out, body.size());
    return out + body;
}

inline std::string subscribe_packet(std::uint16_t packet_id, std::string_view filter, int qos) {
    std::string body;
    append_u16(body, packet_id);
    append_str(body, filter);
    body += static_cast<char>(qos);
    std::string out(1, static_cast<char>(0x82));
    append_remaining_length(out, body.size());
    return out + body;
}

// PUBLISH header up to and including the packet id; the payload follows.
inline void append_publish_header(std::string& out, std::string_view topic, int qos,
                                  std::uint16_t packet_id, std::size_t payload_len) {
    out += static_cast<char>(0x30 | (qos << 1));
    append_remaining_length(out, 2 + topic.size() + (qos ? 2 : 0) + payload_len);
    append_str(out, topic);
    if (qos) append_u16(out, packet_id);
}

inline std::size_t publish_header_size(std::string_view topic, int qos, std::size_t payload_len) {
    const std::size_t rl = 2 + topic.size() + (qos ? 2 : 0) + payload_len;
    std::size_t n = 1;
    std::size_t v = rl;
    do {
        ++n;
        v >>= 7;
    } while (v);
    return n + rl - payload_len;
}

inline void append_puback(std::string& out, std::uint16_t packet_id) {
    out += static_cast<char>(0x40);
    out += static_cast<char>(2);
    append_u16(out, packet_id);
}

inline std::string pingreq_packet() {
    return std::string("\xC0\x00", 2);
}

// DISCONNECT: the client's clean goodbye; the broker closes the connection.
inline std::string disconnect_packet() {
    return std::string("\xE0\x00", 2);
}

struct packet {
    std::uint8_t type = 0;  // high nibble of the first byte
    std::uint8_t flags = 0;
    const char* body = nullptr;
    std::size_t body_len = 0;
    std::size_t consumed = 0;
};

enum class parse_result { ok, need_more, bad };

inline parse_result parse_packet(const char* p, std::size_t n, packet& out) {
    if (n < 2) return parse_result::need_more;
    std::size_t len = 0;
    int shift = 0;
    std::size_t i = 1;
    for (;; ++i) {
        if (i >= n) return parse_result::need_more;
        if (i > 4) return parse_result::bad;
        const auto b = static_cast<unsigned char>(p[i]);
        len |= static_cast<std::size_t>(b & 0x7F) << shift;
        shift += 7;
        if (!(b & 0x80)) break;
    }
    const std::size_t hdr = i + 1;
    if (n < hdr + len) return parse_result::need_more;
    out.type = static_cast<std::uint8_t>(static_cast<unsigned char>(p[0]) >> 4);
    out.flags = static_cast<std::uint8_t>(p[0] & 0x0F);
    out.body = p + hdr;
    out.body_len = len;
    out.consumed = hdr + len;
    return parse_result::ok;
}

inline std::uint16_t get_u16(const char* p) {
    return static_cast<std::uint16_t>((static_cast<unsigned char>(p[0]) << 8) |
                                      static_cast<unsigned char>(p[1]));
}

struct publish_view {
    int qos = 0;
    std::uint16_t packet_id = 0;
    std::string_view topic;
    const char* payload = nullptr;
    std::size_t payload_len = 0;
};

inline bool decode_publish(const packet& pk, publish_view& out) {
    if (pk.body_len < 2) return false;
    const std::size_t tl = get_u16(pk.body);
    out.qos = (pk.flags >> 1) & 3;
    std::size_t at = 2 + tl;
    if (pk.body_len < at + (out.qos ? 2 : 0)) return false;
    out.topic = std::string_view(pk.body + 2, tl);
    if (out.qos) {
        out.packet_id = get_u16(pk.body + at);
        at += 2;
    }
    out.payload = pk.body + at;
    out.payload_len = pk.body_len - at;
    return true;
}

}  // namespace mqtt

// ---- mqttws binary frames (docs/protocol.md, "Binary frames") -------------------------------
namespace mqttws_binary {

constexpr std::size_t publish_head_size = 8;  // type, flags, msgid (4), topic length (2)

// The head of a binary publish, up to and with the topic; the payload follows as is.
inline void append_publish_head(std::string& out, std::string_view topic, int qos,
                                std::uint32_t msgid) {
    out += '\x01';
    out += static_cast<char>(qos & 3);
    for (int shift = 24; shift >= 0; shift -= 8)
        out += static_cast<char>((msgid >> shift) & 0xFF);
    mqtt::append_u16(out, static_cast<std::uint16_t>(topic.size()));
    out += topic;
}

}  // namespace mqttws_binary

// ---- mqttws JSON frames ----------------------------------------------------------------------

// The value of "type" in a JSON frame, assuming (as mqttws and the node bridge write it) that
// the type string has no escapes.
inline std::string_view json_type(const char* p, std::size_t n) {
    static constexpr char key[] = "\"type\":\"";
    const void* m = memmem(p, n, key, sizeof key - 1);
    if (!m) return {};
    const char* s = static_cast<const char*>(m) + sizeof key - 1;
    const char* e =
        static_cast<const char*>(std::memchr(s, '"', static_cast<std::size_t>(p + n - s)));
    if (!e) return {};
    return std::string_view(s, static_cast<std::size_t>(e - s));
}

// Parses the integer after "msgid": at or after `from`; returns false when absent or a string.
inline bool json_msgid(const char* p, std::size_t n, const char* from, std::uint64_t& out) {
    static constexpr char key[] = "\"msgid\":";
    const void* m = memmem(from, static_cast<std::size_t>(p + n - from), key, sizeof key - 1);
    if (!m) return false;
    const char* s = static_cast<const char*>(m) + sizeof key - 1;
    if (s >= p + n || *s < '0' || *s > '9') return false;
    std::uint64_t v = 0;
    while (s < p + n && *s >= '0' && *s <= '9')
        v = v * 10 + static_cast<std::uint64_t>(*s++ - '0');
    out = v;
    return true;
}

}  // namespace bench
