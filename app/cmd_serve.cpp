// `mailer serve`: HTTP surface: one-click unsubscribe, /metrics, /healthz, dashboard.
#include "app/commands.h"

namespace mailer::app {

void register_serve(CLI::App& root, Context&, Action& action) {
  register_unavailable(
      root, "serve", "HTTP surface: one-click unsubscribe, /metrics, /healthz, dashboard", action);
}

}  // namespace mailer::app
