#include "core/error.hpp"

#include <string>

namespace mqttws {
namespace {

class mqttws_category final : public std::error_category {
  public:
    const char* name() const noexcept override { return "mqttws"; }
    std::string message(int value) const override {
        return std::string(wire_name(static_cast<errc>(value)));
    }
};

}  // namespace

const std::error_category& error_category() noexcept {
    static const mqttws_category category;
    return category;
}

std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

std::string_view wire_name(errc e) noexcept {
    switch (e) {
        case errc::bad_request:
            return "bad_request";
        case errc::forbidden:
            return "forbidden";
        case errc::unsupported:
            return "unsupported";
        case errc::too_large:
            return "too_large";
        case errc::not_authenticated:
            return "not_authenticated";
        case errc::unavailable:
            return "unavailable";
        case errc::rate_limited:
            return "rate_limited";
        case errc::timeout:
            return "timeout";
        case errc::internal:
            return "internal";
        case errc::bad_signature:
            return "bad_signature";
        case errc::replayed:
            return "replayed";
    }
    return "internal";
}

}  // namespace mqttws
