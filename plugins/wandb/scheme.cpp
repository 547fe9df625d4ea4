// The wandb:// scheme (scheme.hpp). plugin::Storage writes the C functions and their catch-all;
// here every failure becomes a plugin::Error with the status W&B's answer means (a missing
// artifact or file EMBER_E_NOT_FOUND, another API failure EMBER_E_IO, a bad URL EMBER_E_INVALID, a
// write EMBER_E_UNSUPPORTED) and a message that starts with "wandb: ".
#include "scheme.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "wandb_api_artifacts.hpp"

namespace ember::wandb_plugin {

namespace {

using ember::plugin::Error;

[[noreturn]] void read_only(const char* what, std::string_view url) {
  throw Error(std::string("wandb: ") + what + " " + std::string(url) +
                  ": wandb:// is read-only (model artifacts to resume from); the wandb logger uploads "
                  "checkpoints itself with log_model",
              EMBER_E_UNSUPPORTED);
}

// Run f; an exception that is not already a plugin::Error becomes one with W&B's status.
template <class F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const wb::ApiError& e) {
    throw Error(std::string("wandb: ") + e.what(), e.status() == 404 ? EMBER_E_NOT_FOUND : EMBER_E_IO);
  } catch (const std::bad_alloc&) {
    throw Error("wandb: out of memory", EMBER_E_NOMEM);
  } catch (const std::exception& e) {
    throw Error(std::string("wandb: ") + e.what(), EMBER_E_INVALID);
  }
}

// "wandb://E/P/NAME[:ALIAS][/FILE]" -> ("E/P/NAME:ALIAS", FILE or "").
std::pair<std::string, std::string> parse_wandb_url(std::string_view url) {
  constexpr std::string_view pre = "wandb://";
  std::string_view rest = url.substr(0, pre.size()) == pre ? url.substr(pre.size()) : url;
  std::size_t a = rest.find('/');
  std::size_t b = a == std::string_view::npos ? a : rest.find('/', a + 1);
  if (a == std::string_view::npos || b == std::string_view::npos || a == 0 || b == a + 1 || b + 1 >= rest.size())
    throw Error("wandb: " + std::string(url) +
                    ": expected wandb://ENTITY/PROJECT/NAME[:ALIAS][/FILE], e.g. wandb://me/proj/model-abc123:best",
                EMBER_E_INVALID);
  std::string_view name = rest.substr(b + 1);
  std::string file;
  if (auto c = name.find('/'); c != std::string_view::npos) file = std::string(name.substr(c + 1)), name = name.substr(0, c);
  std::string path = std::string(rest.substr(0, b + 1)) + std::string(name);
  if (name.find(':') == std::string_view::npos) path += ":latest";
  return {path, file};
}

wb::Api storage_api(const Settings& opt) {
  if (opt.api_key.empty())
    throw Error("wandb: reading wandb:// needs a W&B API key: " + opt.key_hint(), EMBER_E_INVALID);
  return wb::Api(opt.api_options(5));
}

// Which file of the artifact a URL without /FILE means.
std::string pick_file(const wb::ResolvedArtifact& a, const std::string& url, const std::string& file) {
  if (!file.empty()) {
    if (!a.contents.contains(file))
      throw Error("wandb: " + url + ": artifact " + a.path + " (" + a.version + ") has no file " + file, EMBER_E_NOT_FOUND);
    return file;
  }
  if (a.contents.size() == 1) return std::string(a.contents.begin()->key());
  if (a.contents.contains("model.ckpt")) return "model.ckpt";
  std::string names;
  for (const auto& kv : a.contents) names += (names.empty() ? "" : ", ") + std::string(kv.key());
  throw Error("wandb: " + url + ": artifact " + a.path + " holds several files (" + names + "); name one: " + url + "/FILE",
              EMBER_E_INVALID);
}

wb::ResolvedArtifact resolve_or_throw(wb::Api& api, const Settings& opt, const std::string& url, const std::string& path) {
  auto a = wb::resolve_artifact(api, path);
  if (!a) throw Error("wandb: " + url + ": no artifact " + path + " on " + opt.base_url, EMBER_E_NOT_FOUND);
  return std::move(*a);
}

// An open reader: the checkpoint file's bytes (downloaded whole and MD5-checked), the window
// [pos, end) still to read.
class Reader final : public ember::plugin::Storage::File {
 public:
  Reader(std::shared_ptr<const std::string> bytes, std::size_t pos, std::size_t end)
      : bytes_(std::move(bytes)), pos_(pos), end_(end) {}
  std::size_t read(void* buf, std::size_t cap) override {
    std::size_t n = std::min(cap, end_ > pos_ ? end_ - pos_ : 0);
    std::memcpy(buf, bytes_->data() + pos_, n);
    pos_ += n;
    return n;
  }
  void write(const void*, std::size_t) override { read_only("cannot write", "wandb://"); }
  void commit() override { read_only("cannot commit", "wandb://"); }

 private:
  std::shared_ptr<const std::string> bytes_;
  std::size_t pos_, end_;
};

}  // namespace

std::unique_ptr<ArtifactScheme::File> ArtifactScheme::open_read(std::string_view url_view, std::uint64_t offset,
                                                                std::uint64_t length) {
  return guarded([&]() -> std::unique_ptr<File> {
    const Settings& opt = scheme_settings();
    std::string u(url_view);
    auto [path, file] = parse_wandb_url(u);
    wb::Api api = storage_api(opt);
    wb::ResolvedArtifact a = resolve_or_throw(api, opt, u, path);
    std::string f = pick_file(a, u, file);
    // Aliases move; the bytes of a version's file do not: cached by artifact id and file.
    std::string key = a.id + "/" + f;
    std::shared_ptr<const std::string> bytes;
    {
      std::lock_guard<std::mutex> lk(cache_mu_);
      if (cache_key_ == key) bytes = cache_bytes_;
    }
    if (!bytes) {
      bytes = std::make_shared<const std::string>(wb::fetch_artifact_file(api, a, f));
      std::lock_guard<std::mutex> lk(cache_mu_);
      cache_key_ = key, cache_bytes_ = bytes;
      scheme_info("read " + u + " (" + a.path + " = " + a.name.substr(0, a.name.find(':')) + ":" + a.version + ", " + f +
                  ", " + std::to_string(bytes->size()) + " bytes, MD5 checked)");
    }
    auto pos = static_cast<std::size_t>(std::min<std::uint64_t>(offset, bytes->size()));
    auto end = length == UINT64_MAX ? bytes->size()
                                    : static_cast<std::size_t>(std::min<std::uint64_t>(bytes->size(), offset + length));
    return std::make_unique<Reader>(bytes, pos, end);
  });
}

std::unique_ptr<ArtifactScheme::File> ArtifactScheme::open_write(std::string_view url) {
  read_only("cannot write", url);
}

ArtifactScheme::Entry ArtifactScheme::stat(std::string_view url) {
  return guarded([&] {
    const Settings& opt = scheme_settings();
    Entry out;
    out.url = std::string(url);
    auto [path, file] = parse_wandb_url(out.url);
    wb::Api api = storage_api(opt);
    wb::ResolvedArtifact a = resolve_or_throw(api, opt, out.url, path);
    std::string f = pick_file(a, out.url, file);
    const auto& entry = a.contents.at(f);
    out.is_dir = false;
    out.size = entry.is_object() && entry.as_object().contains("size") ? entry.at("size").to_number<std::uint64_t>() : 0;
    out.mtime_ns = 0;
    return out;
  });
}

void ArtifactScheme::list(std::string_view prefix, const std::function<bool(const Entry&)>&) {
  read_only("cannot list", prefix);
}

void ArtifactScheme::remove(std::string_view url) { read_only("cannot remove", url); }

}  // namespace ember::wandb_plugin
