/* The AWS Lambda custom runtime entry of the package scripts/package-lambda makes: the file
 * `bootstrap` at the root of the function zip, which Lambda executes with no arguments.
 *
 * It starts `bin/ember lambda` through the dynamic loader carried in the package:
 *
 *   ROOT/lib/ld-linux-x86-64.so.2 --library-path ROOT/lib ROOT/bin/ember lambda
 *
 * because the package's libraries (Debian's glibc 2.36, libstdc++ with GLIBCXX_3.4.30) are newer
 * than Amazon Linux's and must not be mixed with the system's; the system loader would read
 * /etc/ld.so.cache and take the system libc. ROOT is $LAMBDA_TASK_ROOT (Lambda sets it to
 * /var/task), else the directory of argv[0]. The libraries are taken from ROOT/lib, or from
 * /opt/lib when the function uses the libraries layer (`package-lambda --layer`: layers are
 * extracted to /opt).
 *
 * It is linked statically so that it needs nothing from the system, not even a shell: Lambda's
 * images have /bin/sh, but the package test runs it in a chroot holding only the package.
 *
 * Arguments, when given, replace `lambda` (`./bootstrap --version`, `./bootstrap predict
 * --config ...`): Lambda passes none; they are for running the packaged program by hand.
 * SSL_CERT_FILE is set to the system's CA bundle when unset, because the packaged OpenSSL looks
 * in Debian's /usr/lib/ssl, which Amazon Linux does not have.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__)
#define LOADER "ld-linux-x86-64.so.2"
#elif defined(__aarch64__)
#define LOADER "ld-linux-aarch64.so.1"
#else
#error "package-lambda: Lambda runs x86_64 and arm64 only"
#endif

enum { kPath = 4096 };

static void fail(const char* what, const char* path) {
  fprintf(stderr, "bootstrap: %s %s: %s\n", what, path, strerror(errno));
  exit(127);
}

static void join(char* out, const char* dir, const char* name) {
  if (snprintf(out, kPath, "%s/%s", dir, name) >= kPath) {
    errno = ENAMETOOLONG;
    fail("path too long:", dir);
  }
}

int main(int argc, char** argv) {
  char root[kPath];
  const char* task_root = getenv("LAMBDA_TASK_ROOT");
  if (task_root && *task_root) {
    join(root, task_root, ".");
  } else {
    /* The directory of argv[0]: no /proc is needed (a chroot may have none). */
    const char* self = argc > 0 ? argv[0] : "";
    const char* slash = strrchr(self, '/');
    if (!slash) {
      strcpy(root, ".");
    } else if ((size_t)(slash - self) >= sizeof root) {
      errno = ENAMETOOLONG;
      fail("path too long:", self);
    } else {
      memcpy(root, self, (size_t)(slash - self));
      root[slash - self] = '\0';
      if (!*root) strcpy(root, "/");
    }
  }

  char lib[kPath], loader[kPath], ember[kPath];
  join(lib, root, "lib");
  join(loader, lib, LOADER);
  if (access(loader, X_OK) != 0) {
    strcpy(lib, "/opt/lib");
    join(loader, lib, LOADER);
    if (access(loader, X_OK) != 0) {
      join(loader, root, "lib/" LOADER);
      fail("no packaged dynamic loader in ROOT/lib or /opt/lib (the layer):", loader);
    }
  }
  join(ember, root, "bin/ember");

  if (!getenv("SSL_CERT_FILE")) {
    static const char* const bundles[] = {
        "/etc/pki/tls/certs/ca-bundle.crt",   /* Amazon Linux, Fedora */
        "/etc/ssl/certs/ca-certificates.crt", /* Debian */
        "/etc/ssl/certs/ca-bundle.crt",
    };
    for (size_t i = 0; i < sizeof bundles / sizeof bundles[0]; ++i)
      if (access(bundles[i], R_OK) == 0) {
        setenv("SSL_CERT_FILE", bundles[i], 0);
        break;
      }
  }

  /* loader --library-path LIB EMBER (lambda | argv[1..]) NULL */
  char** args = calloc((size_t)argc + 6, sizeof *args);
  if (!args) fail("out of memory", "");
  int n = 0;
  args[n++] = loader;
  args[n++] = "--library-path";
  args[n++] = lib;
  args[n++] = ember;
  if (argc > 1)
    for (int i = 1; i < argc; ++i) args[n++] = argv[i];
  else
    args[n++] = "lambda";
  args[n] = NULL;
  execv(loader, args);
  fail("cannot execute", loader);
  return 127;
}
