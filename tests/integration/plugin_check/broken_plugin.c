/*
 * A deliberately broken vmhost plugin, in plain C11 against <vmhost/plugin.h>
 * (which this also proves compiles as C). Built once per defect; each build
 * must make vmhost-plugin-check fail the check named next to the defect:
 *
 *   BROKEN_CRASH        invoke crashes (SIGSEGV) on a request too short to be a
 *                       message (malformed-request), create abort()s
 *                       on malformed JSON (create-bad-config: SIGABRT)
 *   BROKEN_UNKNOWN_OK   unknown methods return OK (unknown-method)
 *   BROKEN_HANG         invoke never returns on a too-short request
 *                       (malformed-request: timeout)
 *   BROKEN_NEGOTIATION  accepts any ABI range, picking the host's maximum
 *                       (negotiate-above), and its name is not [a-z0-9-]
 *                       (descriptor; the host loader refuses it: load)
 *   BROKEN_ERRORS       reports every error as UNKNOWN whatever it returns,
 *                       without a NUL (error-struct, create-bad-config), and
 *                       leaves *response as it was on failure (malformed-request)
 *
 * Otherwise it is a migration plugin that accepts only the config {} and
 * answers every call with an empty message (all defaults), which is enough
 * for the checks the defects target.
 */
#define _POSIX_C_SOURCE 200809L /* pause() under -std=c11 */

#include <vmhost/plugin.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(BROKEN_CRASH) && !defined(BROKEN_UNKNOWN_OK) && !defined(BROKEN_HANG) && \
    !defined(BROKEN_NEGOTIATION) && !defined(BROKEN_ERRORS)
#error "define one BROKEN_* defect"
#endif

struct vmhost_instance {
  int unused;
};

/* One segment of one word: a struct pointer to an empty struct. */
static const uint64_t kEmptyMessage[2] = {0x0000000100000000ull, 0x00000000fffffffcull};

static int32_t fail(vmhost_error* err, int32_t code, const char* message) {
#ifdef BROKEN_ERRORS
  if (err != NULL) {
    (void)message;
    err->code = VMHOST_ERR_UNKNOWN;
    memset(err->message, '!', sizeof(err->message));
  }
  return code;
#endif
  if (err != NULL) {
    err->code = code;
    err->retryable = 0;
    strncpy(err->message, message, sizeof(err->message) - 1);
    err->message[sizeof(err->message) - 1] = '\0';
  }
  return code;
}

static int32_t create(const uint8_t* config, size_t config_size, const vmhost_host_callbacks* host,
                      vmhost_instance** out, vmhost_error* err) {
  (void)host;
  if (out == NULL) return fail(err, VMHOST_ERR_INVALID_ARGUMENT, "create: out is NULL");
  *out = NULL;
#ifdef BROKEN_CRASH
  if (config != NULL && config_size >= 4 && memcmp(config, "{not", 4) == 0) abort();
#endif
  if (config_size > 0 && (config == NULL || config_size != 2 || memcmp(config, "{}", 2) != 0)) {
    return fail(err, VMHOST_ERR_INVALID_ARGUMENT, "config: only {} is accepted");
  }
  *out = calloc(1, sizeof(vmhost_instance));
  if (*out == NULL) return fail(err, VMHOST_ERR_RESOURCE_EXHAUSTED, "out of memory");
  return VMHOST_OK;
}

static void destroy(vmhost_instance* instance) { free(instance); }

static int32_t invoke(vmhost_instance* instance, uint32_t method, const uint8_t* request,
                      size_t request_size, vmhost_buffer* response, vmhost_error* err) {
  if (response == NULL) return fail(err, VMHOST_ERR_INVALID_ARGUMENT, "response is NULL");
#ifndef BROKEN_ERRORS
  memset(response, 0, sizeof(*response));
#endif
  if (instance == NULL) return fail(err, VMHOST_ERR_INVALID_ARGUMENT, "instance is NULL");
  if (request == NULL || request_size < 16 || request_size % 8 != 0) {
#if defined(BROKEN_CRASH)
    raise(SIGSEGV); /* as a NULL dereference would, without the undefined behaviour */
#elif defined(BROKEN_HANG)
    for (;;) pause();
#endif
    return fail(err, VMHOST_ERR_INVALID_ARGUMENT, "request is not a message");
  }
#ifndef BROKEN_UNKNOWN_OK
  if (method != VMHOST_METHOD_MIGRATION_PLAN && method != VMHOST_METHOD_MIGRATION_PROGRESS) {
    return fail(err, VMHOST_ERR_UNIMPLEMENTED, "unknown method");
  }
#else
  (void)method;
#endif
  response->data = (const uint8_t*)kEmptyMessage;
  response->size = sizeof(kEmptyMessage);
  response->opaque = NULL;
  return VMHOST_OK;
}

static void release(vmhost_instance* instance, vmhost_buffer* buffer) {
  (void)instance;
  if (buffer != NULL) memset(buffer, 0, sizeof(*buffer));
}

#ifdef BROKEN_NEGOTIATION
#define PLUGIN_NAME "Broken_Negotiation"
#else
#define PLUGIN_NAME "broken"
#endif

static vmhost_plugin_descriptor descriptor = {
    sizeof(vmhost_plugin_descriptor),
    0,
    VMHOST_KIND_MIGRATION,
    0,
    PLUGIN_NAME,
    "0.0.1",
    "deliberately broken, for the conformance kit's own tests",
    0,
    create,
    destroy,
    invoke,
    release,
};

VMHOST_PLUGIN_EXPORT const vmhost_plugin_descriptor* vmhost_plugin_entry(vmhost_negotiation* n) {
  if (n == NULL || n->struct_size < sizeof(vmhost_negotiation)) return NULL;
  n->plugin_abi_min = VMHOST_ABI_VERSION_MIN;
  n->plugin_abi_max = VMHOST_ABI_VERSION;
#ifdef BROKEN_NEGOTIATION
  n->abi_version = n->host_abi_max; /* whatever the host offers */
#else
  {
    uint32_t low = n->host_abi_min > n->plugin_abi_min ? n->host_abi_min : n->plugin_abi_min;
    uint32_t high = n->host_abi_max < n->plugin_abi_max ? n->host_abi_max : n->plugin_abi_max;
    if (low > high) {
      n->abi_version = 0;
      return NULL;
    }
    n->abi_version = high;
  }
#endif
  descriptor.abi_version = n->abi_version;
  return &descriptor;
}
