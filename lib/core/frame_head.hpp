// The bytes of one recipient that are written before a frame every recipient shares
// (split_frame): a message's qos, msgid, seq and dup. A JSON head is at most 93 bytes
// (`{"type":"message","qos":2,"msgid":<20 digits>,"seq":<20 digits>,"dup":true,`), a binary
// one 14. Kept inline rather than in a std::string: a message to 10,000 subscribers makes 10,000
// heads on the engine's thread, and each was an allocation there and another one when the head
// was copied to an I/O thread (docs/benchmarks.md, "The engine's cost per delivery").
// Thread safety: a plain value.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mqttws {

class frame_head {
  public:
    static constexpr std::size_t capacity = 96;

    frame_head() = default;
    explicit frame_head(std::string_view bytes) { append(bytes); }

    // Appending past `capacity` is a bug in the code that builds heads (their formats are
    // bounded, see above); it throws rather than write out of bounds.
    void append(std::string_view bytes) {
        make_room(bytes.size());
        std::memcpy(bytes_ + size_, bytes.data(), bytes.size());
        size_ += static_cast<std::uint8_t>(bytes.size());
    }
    // A literal: its length is known here, so the copy is a few moves rather than a call to
    // memcpy (a head is built for every delivery).
    template <std::size_t n>
    void append_literal(const char (&literal)[n]) {
        make_room(n - 1);
        std::memcpy(bytes_ + size_, literal, n - 1);
        size_ += static_cast<std::uint8_t>(n - 1);
    }
    void push_back(char c) {
        make_room(1);
        bytes_[size_++] = c;
    }
    void append_uint(std::uint64_t v) {
        make_room(20);  // the digits of any 64-bit value
        const auto [end, ec] = std::to_chars(bytes_ + size_, bytes_ + capacity, v);
        (void)ec;
        size_ = static_cast<std::uint8_t>(end - bytes_);
    }

    std::string_view view() const { return {bytes_, size_}; }
    std::string str() const { return std::string(view()); }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

    friend bool operator==(const frame_head& a, std::string_view b) { return a.view() == b; }

  private:
    void make_room(std::size_t n) const {
        if (n > capacity - size_) throw std::length_error("frame_head: too long");
    }

    char bytes_[capacity];  // the first size_ are the head
    std::uint8_t size_ = 0;
};

}  // namespace mqttws
