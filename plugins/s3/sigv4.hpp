// AWS Signature Version 4 for S3 (header auth), and the hashes and encodings S3 requests need.
// Header-only; the hashes are include/ember/net/digest.hpp's; no network. The tests sign AWS's documented
// examples and botocore's random requests with exactly these functions.
//
// S3's rules differ from the other services' in two ways that matter here: the canonical URI is
// the path encoded once (each segment URI-encoded, '/' kept, no dot-segment normalisation, so a
// key "a/../b" stays three segments), and the payload hash is always sent as
// x-amz-content-sha256 and signed.
#pragma once

#include <ember/net/digest.hpp>
#include <ember/net/uri.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ember::s3 {

// The hashes and encodings are the shared ones (include/ember/net/digest.hpp).
using net::base64;
using net::digest;
using net::hmac_sha256;
using net::sha256_hex;
using net::to_hex;

// Content-MD5: base64 of the raw MD5 of the body.
inline std::string md5_base64(std::string_view data) { return base64(net::md5(data)); }

// The SHA-256 of an empty payload, the hash every body-less request signs.
inline constexpr const char* kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// URI-encode per SigV4: every byte except A-Z a-z 0-9 - . _ ~ becomes %XX (upper-case hex);
// '/' is kept when encode_slash is false (object key paths). The shared one (ember/net/uri.hpp).
using ember::net::uri_encode;

struct Credentials {
  std::string access_key_id, secret_access_key, session_token;
  bool empty() const { return access_key_id.empty() || secret_access_key.empty(); }
  // For messages: the key id's last 4 characters only; the secret and token never.
  std::string redacted_id() const {
    if (access_key_id.size() <= 4) return "****";
    return "..." + access_key_id.substr(access_key_id.size() - 4);
  }
};

using Params = std::vector<std::pair<std::string, std::string>>;

// The query string of a request, canonical form: names and values URI-encoded, sorted by
// encoded name then value, "name=value" joined by '&' (a valueless parameter is "name=").
// S3 accepts this same string on the wire, so the request target uses it too.
inline std::string canonical_query(const Params& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(query.size());
  for (const auto& kv : query) enc.emplace_back(uri_encode(kv.first), uri_encode(kv.second));
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& kv : enc) {
    if (!out.empty()) out += '&';
    out += kv.first + "=" + kv.second;
  }
  return out;
}

struct SigningInput {
  std::string method;           // "GET"
  std::string canonical_uri;    // the path as sent: already encoded once, e.g. "/bucket/a%20b"
  std::string canonical_query;  // from canonical_query()
  Params headers;               // every header to sign, Host and x-amz-* included
  std::string payload_hash;     // hex SHA-256 of the body (also sent as x-amz-content-sha256)
};

struct Signature {
  std::string canonical_request, string_to_sign, signature, authorization;
};

inline std::string trim_collapse(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      space = false;
      out += c;
    }
  }
  return out;
}

// The signing key for one day/region/service: HMAC chain from "AWS4" + secret.
inline std::string signing_key(std::string_view secret, std::string_view date, std::string_view region,
                               std::string_view service) {
  std::string k = hmac_sha256("AWS4" + std::string(secret), date);
  k = hmac_sha256(k, region);
  k = hmac_sha256(k, service);
  return hmac_sha256(k, "aws4_request");
}

// Sign at amz_date ("20130524T000000Z"). Header names are lower-cased, values trimmed with
// inner runs of spaces collapsed; repeated names are joined with ','.
inline Signature sign(const Credentials& creds, std::string_view region, std::string_view service,
                      std::string_view amz_date, const SigningInput& in) {
  std::vector<std::pair<std::string, std::string>> hs;
  for (const auto& h : in.headers) {
    std::string name = h.first;
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    hs.emplace_back(std::move(name), trim_collapse(h.second));
  }
  std::stable_sort(hs.begin(), hs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string canonical_headers, signed_headers;
  for (std::size_t i = 0; i < hs.size(); ++i) {
    if (i > 0 && hs[i].first == hs[i - 1].first) {
      canonical_headers.back() = ',';  // replace the previous line's '\n'
      canonical_headers += hs[i].second + "\n";
      continue;
    }
    canonical_headers += hs[i].first + ":" + hs[i].second + "\n";
    if (!signed_headers.empty()) signed_headers += ';';
    signed_headers += hs[i].first;
  }
  Signature s;
  s.canonical_request = in.method + "\n" + in.canonical_uri + "\n" + in.canonical_query + "\n" + canonical_headers +
                        "\n" + signed_headers + "\n" + in.payload_hash;
  std::string date(amz_date.substr(0, 8));
  std::string scope = date + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";
  s.string_to_sign = "AWS4-HMAC-SHA256\n" + std::string(amz_date) + "\n" + scope + "\n" + sha256_hex(s.canonical_request);
  std::string key = signing_key(creds.secret_access_key, date, region, service);
  std::string raw = hmac_sha256(key, s.string_to_sign);
  s.signature = to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  s.authorization = "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" + scope +
                    ", SignedHeaders=" + signed_headers + ", Signature=" + s.signature;
  return s;
}

}  // namespace ember::s3
