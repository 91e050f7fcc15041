// `mailer doctor`: check SPF, DKIM, DMARC, MX, PTR and blocklists for a sending domain.
#include "app/commands.h"

namespace mailer::app {

void register_doctor(CLI::App& root, Context&, Action& action) {
  register_unavailable(root, "doctor",
                       "check SPF, DKIM, DMARC, MX, PTR and blocklists for a sending domain",
                       action);
}

}  // namespace mailer::app
