// DKIM signing; see dkim_signer.h.
#include "sender/dkim_signer.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <sstream>

#include "sender/mime.h"

namespace mailer::sender {

struct DkimSigner::Key {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey{nullptr, &EVP_PKEY_free};
  // Fetched once so signing does not look the digest up per message.
  std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> sha256{nullptr, &EVP_MD_free};
  // A signing context initialised once with the key; each signature works
  // on a copy. OpenSSL 3 makes EVP_DigestSignInit costly (provider and
  // algorithm lookups per call), copying an initialised context is cheap.
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> prepared{nullptr, &EVP_MD_CTX_free};
  std::size_t signature_size = 0;
};

namespace {

// RFC 8301 3.2: verifiers must not accept RSA keys shorter than 1024 bits.
constexpr int kMinRsaBits = 1024;
// Width of the folded b= and bh= values: keeps DKIM-Signature lines under 78.
constexpr std::size_t kFoldWidth = 70;

using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  std::array<char, 256> buf{};
  ERR_error_string_n(code, buf.data(), buf.size());
  return buf.data();
}

bool IsWsp(char c) {
  return c == ' ' || c == '\t';
}

bool IsDnsLabels(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t label = 0;
  for (char c : s) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct HeaderField {
  std::string lower_name;
  std::string_view raw;  // the whole field, folding included, without final CRLF
};

// Splits the header block (up to the blank line) into fields.
std::vector<HeaderField> ParseHeaders(std::string_view block) {
  std::vector<HeaderField> fields;
  std::size_t pos = 0;
  while (pos < block.size()) {
    std::size_t end = pos;
    // A field ends at a CRLF not followed by whitespace (a fold).
    while (true) {
      end = block.find("\r\n", end);
      if (end == std::string_view::npos) {
        end = block.size();
        break;
      }
      if (end + 2 < block.size() && IsWsp(block[end + 2])) {
        end += 2;
        continue;
      }
      break;
    }
    const std::string_view raw = block.substr(pos, end - pos);
    const std::size_t colon = raw.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = raw.substr(0, colon);
      while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
      fields.push_back({Lower(name), raw});
    }
    pos = end + 2;
  }
  return fields;
}

std::string Sha256Base64(const EVP_MD* md, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &len, md, nullptr) != 1) {
    throw DkimError("DKIM: SHA-256 failed: " + OpenSslError());
  }
  return Base64(std::string_view(reinterpret_cast<const char*>(digest.data()), len));
}

// Appends `value` to `out` in pieces of kFoldWidth, folding between them.
void AppendFolded(std::string& out, std::string_view value) {
  for (std::size_t i = 0; i < value.size(); i += kFoldWidth) {
    if (i > 0) out += "\r\n\t ";
    out.append(value.substr(i, kFoldWidth));
  }
}

std::string Sign(const DkimSigner::Key& key, DkimAlgorithm algorithm, std::string_view data) {
  MdCtx ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_MD_CTX_copy_ex(ctx.get(), key.prepared.get()) != 1) {
    throw DkimError("DKIM: cannot copy the signing context: " + OpenSslError());
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  const unsigned char* input = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t input_len = data.size();
  if (algorithm == DkimAlgorithm::kEd25519Sha256) {
    // RFC 8463 3: Ed25519 (pure) signs the SHA-256 hash of the header data.
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), digest.data(), &len, key.sha256.get(), nullptr) != 1) {
      throw DkimError("DKIM: SHA-256 failed: " + OpenSslError());
    }
    input = digest.data();
    input_len = len;
  }
  std::string sig(key.signature_size, '\0');
  std::size_t sig_len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len, input,
                     input_len) != 1) {
    throw DkimError("DKIM: signing failed: " + OpenSslError());
  }
  sig.resize(sig_len);
  return Base64(sig);
}

}  // namespace

std::string_view DkimAlgorithmName(DkimAlgorithm algorithm) {
  return algorithm == DkimAlgorithm::kRsaSha256 ? "rsa-sha256" : "ed25519-sha256";
}

std::optional<DkimAlgorithm> ParseDkimAlgorithm(std::string_view name) {
  if (name == "rsa-sha256") return DkimAlgorithm::kRsaSha256;
  if (name == "ed25519-sha256") return DkimAlgorithm::kEd25519Sha256;
  return std::nullopt;
}

DkimSigner DkimSigner::FromPemFile(std::string domain, std::string selector,
                                   DkimAlgorithm algorithm, const std::string& key_file) {
  std::ifstream in(key_file, std::ios::binary);
  if (!in) throw DkimError(fmt::format("DKIM key file {}: cannot be opened", key_file));
  std::ostringstream buf;
  buf << in.rdbuf();
  return FromPem(std::move(domain), std::move(selector), algorithm, buf.str(),
                 fmt::format("DKIM key file {}", key_file));
}

DkimSigner DkimSigner::FromPem(std::string domain, std::string selector, DkimAlgorithm algorithm,
                               std::string_view pem, std::string_view source) {
  if (!IsDnsLabels(domain))
    throw DkimError(fmt::format("{}: bad DKIM domain \"{}\"", source, domain));
  if (!IsDnsLabels(selector)) {
    throw DkimError(fmt::format("{}: bad DKIM selector \"{}\"", source, selector));
  }
  auto key = std::make_shared<Key>();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  key->pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key->pkey) {
    throw DkimError(fmt::format("{}: no PEM private key ({})", source, OpenSslError()));
  }
  const bool is_rsa = EVP_PKEY_is_a(key->pkey.get(), "RSA");
  const bool is_ed25519 = EVP_PKEY_is_a(key->pkey.get(), "ED25519");
  if (algorithm == DkimAlgorithm::kRsaSha256 && !is_rsa) {
    throw DkimError(fmt::format("{}: rsa-sha256 needs an RSA key, the file holds {}", source,
                                EVP_PKEY_get0_type_name(key->pkey.get())));
  }
  if (algorithm == DkimAlgorithm::kEd25519Sha256 && !is_ed25519) {
    throw DkimError(fmt::format("{}: ed25519-sha256 needs an Ed25519 key, the file holds {}",
                                source, EVP_PKEY_get0_type_name(key->pkey.get())));
  }
  if (is_rsa && EVP_PKEY_get_bits(key->pkey.get()) < kMinRsaBits) {
    throw DkimError(fmt::format("{}: RSA key of {} bits, at least {} needed (RFC 8301)", source,
                                EVP_PKEY_get_bits(key->pkey.get()), kMinRsaBits));
  }
  key->sha256.reset(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  if (!key->sha256) {
    throw DkimError(fmt::format("{}: SHA-256 unavailable: {}", source, OpenSslError()));
  }
  key->prepared.reset(EVP_MD_CTX_new());
  // RSA hashes inside the signature operation; Ed25519 takes our digest.
  const EVP_MD* md = is_rsa ? key->sha256.get() : nullptr;
  if (!key->prepared ||
      EVP_DigestSignInit(key->prepared.get(), nullptr, md, nullptr, key->pkey.get()) != 1) {
    throw DkimError(fmt::format("{}: cannot prepare signing: {}", source, OpenSslError()));
  }
  key->signature_size = static_cast<std::size_t>(EVP_PKEY_get_size(key->pkey.get()));
  return DkimSigner(Lower(domain), std::move(selector), algorithm, std::move(key));
}

std::string DkimSigner::RecordName() const {
  return fmt::format("{}._domainkey.{}", selector_, domain_);
}

std::string DkimSigner::PublicKeyRecord() const {
  std::string der;
  if (algorithm_ == DkimAlgorithm::kRsaSha256) {
    unsigned char* out = nullptr;
    const int len = i2d_PUBKEY(key_->pkey.get(), &out);
    if (len <= 0) throw DkimError("DKIM: cannot encode public key: " + OpenSslError());
    der.assign(reinterpret_cast<const char*>(out), static_cast<std::size_t>(len));
    OPENSSL_free(out);
    return "v=DKIM1; k=rsa; p=" + Base64(der);
  }
  std::size_t len = 0;
  EVP_PKEY_get_raw_public_key(key_->pkey.get(), nullptr, &len);
  der.resize(len);
  if (EVP_PKEY_get_raw_public_key(key_->pkey.get(), reinterpret_cast<unsigned char*>(der.data()),
                                  &len) != 1) {
    throw DkimError("DKIM: cannot read Ed25519 public key: " + OpenSslError());
  }
  return "v=DKIM1; k=ed25519; p=" + Base64(der);
}

std::string RelaxedHeader(std::string_view field) {
  const std::size_t colon = field.find(':');
  std::string_view name = field.substr(0, colon);
  while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
  std::string out = Lower(name);
  out += ':';
  if (colon == std::string_view::npos) return out;
  bool pending_space = false;
  bool started = false;
  const std::string_view value = field.substr(colon + 1);
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\r' || c == '\n') continue;  // unfold
    if (IsWsp(c)) {
      pending_space = true;
      continue;
    }
    if (pending_space && started) out += ' ';
    pending_space = false;
    started = true;
    out += c;
  }
  return out;
}

std::string RelaxedBody(std::string_view body) {
  std::string out;
  out.reserve(body.size());
  std::size_t empty_lines = 0;
  std::size_t pos = 0;
  std::string line;
  while (pos < body.size()) {
    std::size_t end = body.find("\r\n", pos);
    const std::size_t next = end == std::string_view::npos ? body.size() : end + 2;
    if (end == std::string_view::npos) end = body.size();
    line.clear();
    bool pending_space = false;
    for (std::size_t i = pos; i < end; ++i) {
      if (IsWsp(body[i])) {
        pending_space = true;
        continue;
      }
      if (pending_space) line += ' ';
      pending_space = false;
      line += body[i];
    }
    // Trailing whitespace is dropped: pending_space is simply not written.
    if (line.empty()) {
      ++empty_lines;
    } else {
      for (; empty_lines > 0; --empty_lines) out += "\r\n";
      out += line;
      out += "\r\n";
    }
    pos = next;
  }
  return out;
}

std::string SignMessage(std::string_view message, std::span<const DkimSigner> signers,
                        std::chrono::system_clock::time_point now) {
  if (signers.empty()) return std::string(message);
  const std::size_t split = message.find("\r\n\r\n");
  if (split == std::string_view::npos) {
    throw DkimError("DKIM: message has no blank line between headers and body");
  }
  const std::string_view header_block = message.substr(0, split + 2);
  const std::string_view body = message.substr(split + 4);
  const std::vector<HeaderField> fields = ParseHeaders(header_block);

  // Signed fields, in kDkimSignedHeaders order; for repeated names the last
  // instance comes first (RFC 6376 5.4.2).
  std::string h_tag;
  std::string signed_data;
  for (std::string_view name : kDkimSignedHeaders) {
    for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
      if (it->lower_name != name) continue;
      if (!h_tag.empty()) h_tag += ':';
      h_tag += name;
      signed_data += RelaxedHeader(it->raw);
      signed_data += "\r\n";
    }
  }
  // Every signer here uses SHA-256 and relaxed body canonicalisation, so one
  // body hash serves them all.
  const std::string body_hash = Sha256Base64(signers.front().key_->sha256.get(), RelaxedBody(body));
  const auto timestamp =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();

  std::string prepended;
  for (const DkimSigner& signer : signers) {
    std::string header = fmt::format(
        "DKIM-Signature: v=1; a={}; c=relaxed/relaxed;\r\n\td={}; s={}; t={};\r\n\th=",
        DkimAlgorithmName(signer.algorithm()), signer.domain(), signer.selector(), timestamp);
    std::size_t line = 3;  // "\th="
    std::size_t start = 0;
    while (start < h_tag.size()) {
      std::size_t colon = h_tag.find(':', start + 1);
      if (colon == std::string::npos) colon = h_tag.size();
      if (line + (colon - start) > kFoldWidth) {
        header += "\r\n\t ";
        line = 2;
      }
      header.append(h_tag, start, colon - start);
      line += colon - start;
      start = colon;
    }
    header += ";\r\n\tbh=";
    AppendFolded(header, body_hash);
    header += ";\r\n\tb=";
    const std::string to_sign = signed_data + RelaxedHeader(header);
    AppendFolded(header, Sign(*signer.key_, signer.algorithm(), to_sign));
    header += "\r\n";
    prepended.insert(0, header);
  }
  std::string out;
  out.reserve(prepended.size() + message.size());
  out += prepended;
  out += message;
  return out;
}

}  // namespace mailer::sender
