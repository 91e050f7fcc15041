#include "app/metrics/metrics_exposition.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <utility>
#include <vector>

namespace mailer::app {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Accumulates one family at a time: header first, then its samples.
class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    name_ = name;
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name,
                   escape_help_text(help), name, type);
  }

  void sample(const Labels& labels, double value) {
    out_ += name_;
    if (!labels.empty()) {
      out_ += '{';
      for (std::size_t i = 0; i < labels.size(); ++i) {
        if (i) out_ += ',';
        fmt::format_to(std::back_inserter(out_), "{}=\"{}\"", labels[i].first,
                       escape_label_value(labels[i].second));
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += format_sample_value(value);
    out_ += '\n';
  }

  std::string take() { return std::move(out_); }

 private:
  std::string name_;
  std::string out_;
};

// The reply signals that defer a message (it is retried later); accepted
// and hard_bounce are counted on their own.
bool is_deferral(std::string_view signal) {
  return signal != "accepted" && signal != "hard_bounce";
}

double seconds_since_epoch(db::SysTime t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

void provider_families(Exposition& e, const OperatorSnapshot& s) {
  e.family("mailer_provider_rate", "gauge",
           "Current send rate the throttle allows per provider and egress, messages per second.");
  for (const auto& t : s.throttle)
    e.sample({{"provider", t.provider}, {"egress", t.egress}}, t.rate);
  e.family("mailer_provider_connection_limit", "gauge",
           "Current limit of concurrent SMTP connections per provider and egress.");
  for (const auto& t : s.throttle) {
    e.sample({{"provider", t.provider}, {"egress", t.egress}}, t.connection_limit);
  }
  e.family("mailer_provider_state", "gauge",
           "Throttle state per provider and egress: 1 for the current state, 0 for the others.");
  for (const auto& t : s.throttle) {
    for (const char* state : {"normal", "backoff", "suspended"}) {
      e.sample({{"provider", t.provider}, {"egress", t.egress}, {"state", state}},
               t.mode == state ? 1 : 0);
    }
  }
  e.family("mailer_provider_suspended_until_seconds", "gauge",
           "Unix time at which a suspended provider may be sent to again.");
  for (const auto& t : s.throttle) {
    if (t.mode == "suspended" && t.suspended_until) {
      e.sample({{"provider", t.provider}, {"egress", t.egress}},
               seconds_since_epoch(*t.suspended_until));
    }
  }
  e.family("mailer_provider_in_flight", "gauge",
           "Deliveries claimed by workers and not yet settled (state sending), per provider.");
  for (const auto& q : s.queues) e.sample({{"provider", q.provider}}, q.in_flight);
  e.family("mailer_provider_queue_depth", "gauge",
           "Deliveries waiting to be sent or retried (states queued and deferred), per provider.");
  for (const auto& q : s.queues) e.sample({{"provider", q.provider}}, q.depth);
}

void reply_families(Exposition& e, const OperatorSnapshot& s) {
  e.family("mailer_replies_total", "counter",
           "SMTP replies per provider, egress and the throttle signal they carried.");
  for (const auto& r : s.replies) {
    e.sample({{"provider", r.provider}, {"egress", r.egress}, {"signal", r.signal}},
             static_cast<double>(r.count));
  }
  e.family("mailer_accepted_total", "counter", "Messages accepted by the receiving server.");
  for (const auto& r : s.replies) {
    if (r.signal == "accepted") {
      e.sample({{"provider", r.provider}, {"egress", r.egress}}, static_cast<double>(r.count));
    }
  }
  e.family("mailer_deferred_total", "counter",
           "Attempts deferred for a later retry, by the signal of the reply.");
  for (const auto& r : s.replies) {
    if (is_deferral(r.signal)) {
      e.sample({{"provider", r.provider}, {"egress", r.egress}, {"signal", r.signal}},
               static_cast<double>(r.count));
    }
  }
  e.family("mailer_bounced_total", "counter",
           "Messages refused for good (hard bounces); their addresses are suppressed.");
  for (const auto& r : s.replies) {
    if (r.signal == "hard_bounce") {
      e.sample({{"provider", r.provider}, {"egress", r.egress}}, static_cast<double>(r.count));
    }
  }
}

void campaign_families(Exposition& e, const OperatorSnapshot& s) {
  auto labels = [](const CampaignProgress& c) {
    return Labels{{"campaign_id", std::to_string(c.id)}, {"campaign", c.name}};
  };
  e.family("mailer_campaign_info", "gauge", "1 per campaign, labelled with its status.");
  for (const auto& c : s.campaigns) {
    Labels l = labels(c);
    l.emplace_back("status", c.status);
    e.sample(l, 1);
  }
  e.family("mailer_campaign_deliveries", "gauge", "Deliveries of a campaign by state.");
  for (const auto& c : s.campaigns) {
    for (const auto& [state, count] : c.counts) {
      Labels l = labels(c);
      l.emplace_back("state", state);
      e.sample(l, static_cast<double>(count));
    }
  }
  e.family("mailer_campaign_progress_ratio", "gauge",
           "Share of a campaign's deliveries that are final (sent, bounced, failed, skipped).");
  for (const auto& c : s.campaigns) {
    const auto total = c.total();
    e.sample(labels(c), total == 0 ? 0.0 : static_cast<double>(c.done()) / total);
  }
  e.family("mailer_campaign_bounce_rate", "gauge",
           "Hard bounces reported for a campaign per message it sent (what [guard] "
           "max_bounce_rate is compared with).");
  for (const auto& c : s.campaigns) e.sample(labels(c), c.feedback.bounce_rate());
  e.family("mailer_campaign_complaint_rate", "gauge",
           "Complaints reported for a campaign per message it sent (what [guard] "
           "max_complaint_rate is compared with).");
  for (const auto& c : s.campaigns) e.sample(labels(c), c.feedback.complaint_rate());
}

void feedback_families(Exposition& e, const OperatorSnapshot& s) {
  e.family("mailer_feedback_total", "counter",
           "Bounce, complaint and auto-reply reports recorded, by what they were applied as "
           "(unmatched: no delivery of ours could be found for them).");
  const db::FeedbackCounts& f = s.feedback;
  e.sample({{"kind", "hard"}}, static_cast<double>(f.hard));
  e.sample({{"kind", "soft"}}, static_cast<double>(f.soft));
  e.sample({{"kind", "complaint"}}, static_cast<double>(f.complaints));
  e.sample({{"kind", "auto_reply"}}, static_cast<double>(f.auto_replies));
  e.sample({{"kind", "unmatched"}}, static_cast<double>(f.unmatched));
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_help_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_sample_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

std::string render_prometheus(const OperatorSnapshot& snapshot) {
  Exposition e;
  provider_families(e, snapshot);
  reply_families(e, snapshot);
  campaign_families(e, snapshot);
  feedback_families(e, snapshot);
  return e.take();
}

}  // namespace mailer::app
