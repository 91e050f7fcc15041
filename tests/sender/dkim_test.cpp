// DKIM signing, verified by an independent implementation (Debian's
// python3-dkim) for rsa-sha256, ed25519-sha256 and two signatures at once;
// relaxed canonicalisation vectors from RFC 6376; key loading errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "sender/dkim_signer.h"
#include "sender/message_composer.h"

namespace mailer::sender {
namespace {

using ::testing::HasSubstr;

// Debian's interpreter, where python3-dkim is installed; a python3 found
// first on PATH (pyenv, a virtualenv) may lack it.
constexpr const char* kPython = "/usr/bin/python3";
// A past instant: verifiers reject signatures timestamped in the future.
const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1741064767));

struct CommandResult {
  int status;
  std::string output;
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result{-1, ""};
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  result.status = ::pclose(pipe);
  return result;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Writes a fresh private key of `type` ("RSA", "ED25519") as PEM to `path`.
void WriteKey(const std::filesystem::path& path, const char* type, int rsa_bits = 2048) {
  EVP_PKEY* key = std::string_view(type) == "RSA"
                      ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(rsa_bits))
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, type);
  ASSERT_NE(key, nullptr);
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  std::fclose(f);
  EVP_PKEY_free(key);
}

class DkimTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     ("dkim_test_" + std::to_string(::getpid())));
    std::filesystem::create_directories(*dir_);
    WriteKey(*dir_ / "rsa.pem", "RSA");
    WriteKey(*dir_ / "ed25519.pem", "ED25519");
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static std::string KeyPath(const char* name) { return (*dir_ / name).string(); }

  static DkimSigner Rsa() {
    return DkimSigner::FromPemFile("example.com", "rsa2026", DkimAlgorithm::kRsaSha256,
                                   KeyPath("rsa.pem"));
  }
  static DkimSigner Ed25519() {
    return DkimSigner::FromPemFile("example.com", "ed2026", DkimAlgorithm::kEd25519Sha256,
                                   KeyPath("ed25519.pem"));
  }

  // A composed campaign message, the way the sender produces them.
  static std::string Message(std::string_view first_name = "Jane") {
    ComposerSettings s;
    s.unsubscribe_base_url = "https://mail.example.com";
    s.unsubscribe_mailto = "unsubscribe@example.com";
    s.tokens = std::make_shared<UnsubscribeTokenCodec>("dkim-test-secret-0123456789abcdef");
    s.verp =
        std::make_shared<VerpCodec>("bounce", "example.com", "dkim-test-secret-0123456789abcdef");
    CampaignContent c;
    c.campaign_id = 7;
    c.list_id = "news";
    c.from = "Zoë's Café <news@example.com>";
    c.subject = "Grüße, {{first_name}} — spring offers inside";
    c.text = "Hello {{first_name}},\n  lines with   spaces   \n\n\n";
    c.html = "<p>Hello {{first_name}}</p>";
    DeliveryRecipient r;
    r.delivery_id = 99;
    r.recipient_id = 5;
    r.email = "jane@example.org";
    r.fields.Set("first_name", std::string(first_name));
    return MessageComposer(c, s).Compose(r, kNow).data;
  }

  // Runs python3-dkim on `message` with the signers' public keys as DNS.
  static CommandResult Verify(const std::string& message, std::span<const DkimSigner> keys) {
    const auto path = *dir_ / "message.eml";
    std::ofstream(path, std::ios::binary) << message;
    std::string command = std::string(kPython) + " " + MAILER_SOURCE_DIR +
                          "/tests/sender/dkim_verify.py " + path.string();
    for (const DkimSigner& k : keys) {
      command += " " + ShellQuote(k.RecordName() + "=" + k.PublicKeyRecord());
    }
    return RunCommand(command);
  }

  static std::filesystem::path* dir_;
};

std::filesystem::path* DkimTest::dir_ = nullptr;

TEST_F(DkimTest, RsaSha256SignatureVerifiesWithPythonDkim) {
  const std::array signers{Rsa()};
  const std::string signed_message = SignMessage(Message(), signers, kNow);
  ASSERT_TRUE(signed_message.starts_with("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;"));
  const auto result = Verify(signed_message, signers);
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("0 ok"));
  EXPECT_THAT(result.output, HasSubstr("signatures 1"));
}

TEST_F(DkimTest, Ed25519Sha256SignatureVerifiesWithPythonDkim) {
  const std::array signers{Ed25519()};
  const std::string signed_message = SignMessage(Message(), signers, kNow);
  ASSERT_THAT(signed_message, HasSubstr("a=ed25519-sha256"));
  const auto result = Verify(signed_message, signers);
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("signatures 1"));
}

TEST_F(DkimTest, TwoSignaturesOnOneMessageBothVerify) {
  const std::array signers{Rsa(), Ed25519()};
  const std::string signed_message = SignMessage(Message(), signers, kNow);
  const auto result = Verify(signed_message, signers);
  EXPECT_EQ(result.status, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("0 ok"));
  EXPECT_THAT(result.output, HasSubstr("1 ok"));
  EXPECT_THAT(result.output, HasSubstr("signatures 2"));
}

TEST_F(DkimTest, AlteredBodyOrSignedHeaderFailsIndependentVerification) {
  const std::array signers{Rsa()};
  const std::string signed_message = SignMessage(Message(), signers, kNow);
  std::string body_changed = signed_message;
  body_changed.replace(body_changed.find("Hello Jane"), 10, "Hello Joan");
  EXPECT_NE(Verify(body_changed, signers).status, 0);
  std::string header_changed = signed_message;
  header_changed.replace(header_changed.find("Message-ID: <"), 13, "Message-ID: <1");
  EXPECT_NE(Verify(header_changed, signers).status, 0);
  // Relaxed canonicalisation tolerates whitespace changes a relay may make.
  std::string rewrapped = signed_message;
  rewrapped.replace(rewrapped.find("MIME-Version: 1.0"), 17, "MIME-Version:   1.0 ");
  EXPECT_EQ(Verify(rewrapped, signers).status, 0) << Verify(rewrapped, signers).output;
}

TEST_F(DkimTest, SignsTheRequiredHeadersThatArePresentOnly) {
  const std::array signers{Ed25519()};
  const std::string signed_message = SignMessage(Message(), signers, kNow);
  const std::size_t h = signed_message.find("h=");
  std::string h_tag = signed_message.substr(h + 2, signed_message.find(';', h) - h - 2);
  std::erase_if(h_tag, [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
  EXPECT_EQ(h_tag,
            "from:to:subject:date:message-id:mime-version:content-type:list-unsubscribe:"
            "list-unsubscribe-post:feedback-id");
}

TEST_F(DkimTest, SignatureHeaderLinesStayShort) {
  const std::array signers{Rsa(), Ed25519()};
  const std::string signed_message = SignMessage(Message(), signers, kNow);
  // The two DKIM-Signature fields come first, up to the first other header.
  const std::string fields = signed_message.substr(0, signed_message.find("\r\nFrom:") + 2);
  std::size_t pos = 0;
  int lines = 0;
  while (pos < fields.size()) {
    const std::size_t end = fields.find("\r\n", pos);
    EXPECT_LE(end - pos, kPreferredHeaderLineLength) << fields.substr(pos, end - pos);
    pos = end + 2;
    ++lines;
  }
  EXPECT_GE(lines, 10);
}

TEST_F(DkimTest, OneSignerSharedByThreadsGivesIdenticalEd25519Signatures) {
  // Ed25519 signatures are deterministic: concurrent signing through one
  // shared prepared key must give byte-identical messages.
  const std::array signers{Ed25519()};
  const std::string message = Message();
  const std::string expected = SignMessage(message, signers, kNow);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (SignMessage(message, signers, kNow) != expected) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(DkimTest, NoSignersLeavesTheMessageUnchanged) {
  const std::string message = Message();
  EXPECT_EQ(SignMessage(message, {}, kNow), message);
  EXPECT_THROW(SignMessage("no separator", std::array{Rsa()}, kNow), DkimError);
}

TEST_F(DkimTest, KeyErrorsNameTheFile) {
  const std::string missing = KeyPath("missing.pem");
  try {
    DkimSigner::FromPemFile("example.com", "s", DkimAlgorithm::kRsaSha256, missing);
    FAIL() << "expected DkimError";
  } catch (const DkimError& e) {
    EXPECT_THAT(e.what(), HasSubstr(missing));
  }
  const std::string garbage = KeyPath("garbage.pem");
  std::ofstream(garbage) << "not a key\n";
  try {
    DkimSigner::FromPemFile("example.com", "s", DkimAlgorithm::kRsaSha256, garbage);
    FAIL() << "expected DkimError";
  } catch (const DkimError& e) {
    EXPECT_THAT(e.what(), HasSubstr(garbage));
  }
  try {
    DkimSigner::FromPemFile("example.com", "s", DkimAlgorithm::kRsaSha256, KeyPath("ed25519.pem"));
    FAIL() << "expected DkimError";
  } catch (const DkimError& e) {
    EXPECT_THAT(e.what(), HasSubstr("ed25519.pem"));
    EXPECT_THAT(e.what(), HasSubstr("RSA"));
  }
  WriteKey(*dir_ / "rsa512.pem", "RSA", 512);
  try {
    DkimSigner::FromPemFile("example.com", "s", DkimAlgorithm::kRsaSha256, KeyPath("rsa512.pem"));
    FAIL() << "expected DkimError";
  } catch (const DkimError& e) {
    EXPECT_THAT(e.what(), HasSubstr("1024"));
  }
  EXPECT_THROW(DkimSigner::FromPemFile("bad domain", "s", DkimAlgorithm::kEd25519Sha256,
                                       KeyPath("ed25519.pem")),
               DkimError);
}

TEST_F(DkimTest, PublishesKeyRecordsInDkimFormat) {
  EXPECT_THAT(Rsa().PublicKeyRecord(), ::testing::StartsWith("v=DKIM1; k=rsa; p=MII"));
  const std::string ed = Ed25519().PublicKeyRecord();
  EXPECT_THAT(ed, ::testing::StartsWith("v=DKIM1; k=ed25519; p="));
  EXPECT_EQ(ed.size(), std::string("v=DKIM1; k=ed25519; p=").size() + 44);  // 32 bytes
  EXPECT_EQ(Rsa().RecordName(), "rsa2026._domainkey.example.com");
  EXPECT_EQ(ParseDkimAlgorithm("ed25519-sha256"), DkimAlgorithm::kEd25519Sha256);
  EXPECT_EQ(ParseDkimAlgorithm("rsa-sha1"), std::nullopt);
}

// RFC 6376 3.4.5 example.
TEST(DkimCanonicalisationTest, RelaxedMatchesTheRfcExample) {
  EXPECT_EQ(RelaxedHeader("A: X"), "a:X");
  EXPECT_EQ(RelaxedHeader("B : Y\t\r\n\tZ  "), "b:Y Z");
  EXPECT_EQ(RelaxedBody(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
  EXPECT_EQ(RelaxedBody(""), "");
  EXPECT_EQ(RelaxedBody("\r\n\r\n"), "");
  EXPECT_EQ(RelaxedBody("x"), "x\r\n");
}

}  // namespace
}  // namespace mailer::sender
