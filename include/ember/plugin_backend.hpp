// A storage plugin's table as a storage::Backend: how s3:// (or any plugin scheme) joins the
// URL space. Errors name the plugin, the operation and the URL, with the plugin's message
// ("s3: open s3://b/k failed: ..."). The table is the instance's adopted copy: every slot is
// present (PluginInstance refused the plugin otherwise).
#pragma once

#include <ember/loader.hpp>
#include <ember/storage.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ember {

// A storage plugin (ember.storage/1) seen as a storage::Backend, to register for its schemes.
class PluginBackend final : public storage::Backend {
 public:
  PluginBackend(PluginInstance& p, const ember_storage_v1_t& t) : p_(p), t_(t) {}
  std::unique_ptr<storage::Reader> open_read(const std::string& url, std::uint64_t off, std::uint64_t len) override {
    ember_file_t* f = nullptr;
    check(t_.open_read(p_.self(), cstr(url), off, len, &f), "open", url);
    struct R final : storage::Reader {
      PluginBackend* b;
      ember_file_t* f;
      std::string url;
      ~R() override { b->t_.close(b->p_.self(), f); }
      std::size_t read(void* buf, std::size_t cap) override {
        std::size_t got = 0;
        b->check(b->t_.read(b->p_.self(), f, buf, cap, &got), "read", url);
        return got;
      }
    };
    auto r = std::make_unique<R>();
    r->b = this, r->f = f, r->url = url;
    return r;
  }
  std::unique_ptr<storage::Writer> open_write(const std::string& url) override {
    ember_file_t* f = nullptr;
    check(t_.open_write(p_.self(), cstr(url), &f), "open for writing", url);
    struct W final : storage::Writer {
      PluginBackend* b;
      ember_file_t* f;
      std::string url;
      ~W() override { b->t_.close(b->p_.self(), f); }
      void write(const void* d, std::size_t n) override { b->check(b->t_.write(b->p_.self(), f, d, n), "write", url); }
      void commit() override { b->check(b->t_.commit(b->p_.self(), f), "commit", url); }
    };
    auto w = std::make_unique<W>();
    w->b = this, w->f = f, w->url = url;
    return w;
  }
  std::optional<storage::Stat> stat(const std::string& url) override {
    ember_stat_t st{};
    st.struct_size = sizeof st;
    ember_status_t rc = t_.stat(p_.self(), cstr(url), &st);
    if (rc == EMBER_E_NOT_FOUND) return std::nullopt;
    check(rc, "stat", url);
    return storage::Stat{std::string(sv(st.url)), st.is_dir != 0, st.size, st.mtime_ns};
  }
  std::vector<storage::Stat> list(const std::string& prefix) override {
    std::vector<storage::Stat> out;
    check(t_.list(p_.self(), cstr(prefix),
                  [](void* u, const ember_stat_t* s) -> int32_t {
                    static_cast<std::vector<storage::Stat>*>(u)->push_back(
                        {std::string(sv(s->url)), s->is_dir != 0, s->size, s->mtime_ns});
                    return 0;
                  },
                  &out),
          "list", prefix);
    return out;
  }
  bool remove(const std::string& url) override {
    ember_status_t rc = t_.remove(p_.self(), cstr(url));
    if (rc == EMBER_E_NOT_FOUND) return false;
    check(rc, "remove", url);
    return true;
  }

 private:
  void check(ember_status_t rc, const char* what, const std::string& url) {
    if (rc == EMBER_OK) return;
    throw RuntimeError(p_.failure(std::string(what) + " " + url, rc));
  }
  PluginInstance& p_;
  const ember_storage_v1_t& t_;
};

// Register inst's storage interface (if any) for each of its schemes in urls.
inline void register_storage(PluginInstance& inst, storage::UrlSpace& urls) {
  auto* st = inst.interface<ember_storage_v1_t>(EMBER_STORAGE_V1);
  if (!st) return;
  std::string schemes(sv(st->schemes));
  std::size_t start = 0;
  while (start <= schemes.size()) {
    auto c = schemes.find(',', start);
    std::string scheme = schemes.substr(start, c == std::string::npos ? std::string::npos : c - start);
    if (!scheme.empty()) urls.add(scheme, std::make_shared<PluginBackend>(inst, *st));
    if (c == std::string::npos) break;
    start = c + 1;
  }
}

}  // namespace ember
