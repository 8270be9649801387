#include "io/action_runner.hpp"

#include <variant>

#include "io/log.hpp"

namespace mqttws {

void action_runner::run(action_list& actions) {
    for (auto& a : actions) {
        std::visit([this](auto& act) { carry_out(act); }, a);
    }
    actions.clear();
}

void action_runner::carry_out(log_line& a) {
    logging::write(a.level, a.text);
}

}  // namespace mqttws
