// Test data for the queue, campaign and scheduler suites: a list of N
// recipients spread over four providers, inserted with SQL (the importer is
// not needed to test the queue), and a campaign over it.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <pqxx/pqxx>
#include <string>

namespace mailer::testing {

// The domains recipients are spread over, round robin; the first three have
// domains rows (gmail, outlook, yahoo), example.org has none, so its provider
// comes from the provider classifier at freeze time.
inline constexpr const char* kSeedDomains[] = {"gmail.com", "outlook.com", "yahoo.com",
                                               "example.org"};

// Creates list `name` with `n` members ("NAME-I@DOMAIN", attribute
// first_name); returns the list id.
inline std::int64_t seed_list(const std::string& url, const std::string& name, int n) {
  pqxx::connection c(url);
  pqxx::work w(c);
  w.exec(
      "INSERT INTO domains (domain, provider) VALUES ('gmail.com', 'gmail'),"
      " ('outlook.com', 'outlook'), ('yahoo.com', 'yahoo') ON CONFLICT DO NOTHING");
  const auto list_id = w.exec_params1("INSERT INTO lists (name) VALUES ($1) RETURNING id", name)[0]
                           .as<std::int64_t>();
  w.exec_params(
      "WITH r AS (INSERT INTO recipients (email, email_key, domain, attributes)"
      " SELECT $1 || '-' || i || '@' || d, lower($1 || '-' || i || '@' || d), d,"
      "  jsonb_build_object('first_name', 'Reader ' || i)"
      " FROM generate_series(1, $2::int) i,"
      "  LATERAL (SELECT (ARRAY['gmail.com','outlook.com','yahoo.com','example.org'])[1 + i % 4]"
      "   AS d) x RETURNING id)"
      " INSERT INTO list_members (list_id, recipient_id) SELECT $3, id FROM r",
      name, n, list_id);
  w.commit();
  return list_id;
}

// A draft campaign over `list_id` (SQL, no validation); returns its id.
inline std::int64_t seed_campaign(const std::string& url, std::int64_t list_id,
                                  const std::string& status = "draft") {
  pqxx::connection c(url);
  pqxx::work w(c);
  const auto id = w.exec_params1(
                       "INSERT INTO campaigns (name, list_id, from_header, subject, text_body,"
                       " status) VALUES ('test', $1, 'News <news@example.com>', 'Hello',"
                       " 'Hi {{first_name}}', $2) RETURNING id",
                       list_id, status)[0]
                      .as<std::int64_t>();
  w.commit();
  return id;
}

// One integer from a query.
inline std::int64_t query_int(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::work w(c);
  return w.exec1(sql)[0].as<std::int64_t>();
}

inline void exec_sql(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::work w(c);
  w.exec(sql);
  w.commit();
}

}  // namespace mailer::testing
