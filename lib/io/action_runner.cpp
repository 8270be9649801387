#include "io/action_runner.hpp"

#include <variant>

#include "io/log.hpp"

namespace mqttws {

void action_runner::run(action_list& actions) {
    for (std::size_t k = 0; k < actions.size(); ++k) {
        // A fan-out is a long run of sends to as many connections: their entries are fetched
        // while the sends before them run (docs/benchmarks.md, "The engine's cost per delivery").
        if (k + prefetch_distance < actions.size()) {
            if (const auto* ahead = std::get_if<send_frame>(&actions[k + prefetch_distance]))
                clients_.prefetch(ahead->to);
        }
        std::visit([this](auto& act) { carry_out(act); }, actions[k]);
    }
    actions.clear();
}

void action_runner::carry_out(log_line& a) {
    logging::write(a.level, a.text);
}

}  // namespace mqttws
