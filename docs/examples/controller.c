/*
 * A minimal edgeloop controller in C, written from docs/protocol.md alone (protocol version 1).
 *
 * The "robot" is a toy integrator with two joints: q += velocity * dt. The controller binds the
 * command SUB and the state PUB, applies the newest valid command each cycle, holds still on a stop or on
 * a command with a non-finite action, holds still when no valid command arrived for watchdog_ms, obeys only
 * commands newer than the last of their runtime session (and the newest session), and publishes state at 100 Hz.
 *
 * Build (Debian/Ubuntu: apt-get install gcc libzmq3-dev libmsgpack-dev):
 *     gcc -std=c11 -O2 -Wall -Wextra -o controller controller.c -lzmq -lmsgpackc -lm
 * Run:
 *     ./controller [command_endpoint] [state_endpoint] [watchdog_ms]
 *     (defaults tcp://127.0.0.1:5555 tcp://127.0.0.1:5556 300; port * binds an ephemeral port)
 * It prints one JSON line with the bound endpoints when ready and one with its counters at exit
 * (SIGINT or SIGTERM, exit status 0).
 *
 * CURVE security (docs/security.md): with EDGELOOP_CURVE_SECRET_KEY set to this controller's secret key
 * and EDGELOOP_CURVE_CLIENTS to the public keys it admits (Z85 text, 40 characters each, the clients'
 * comma-separated), both sockets are CURVE servers and a ZAP handler on the same context admits only
 * those clients; refused keys are counted (refused_unknown_key) and logged once each.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <msgpack.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define PROTOCOL_VERSION 1
#define ACTION_DIM 2
#define STATE_PERIOD_S 0.01 /* 100 Hz */
#define MAX_MESSAGE_BYTES (8 * 1024 * 1024)
#define MAX_SESSION_BYTES 64
#define RETIRED_SESSIONS 16 /* replaced sessions whose commands are still refused */

static volatile sig_atomic_t running = 1;

static void on_signal(int signum) {
    (void)signum;
    running = 0;
}

/* Stamps are ns since the Unix epoch on the real-time clock; intervals use the monotonic clock. */
static int64_t epoch_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static double monotonic_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- decoding: validate everything before anything acts ---------------------------------------- */

static const msgpack_object *field(const msgpack_object_map *map, const char *key) {
    size_t length = strlen(key);
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == length && memcmp(k->via.str.ptr, key, length) == 0)
            return &map->ptr[i].val;
    }
    return NULL;
}

static bool as_int(const msgpack_object *o, int64_t *out) {
    if (o == NULL) return false;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return true;
    }
    return false; /* bool, float, str ... are not ints */
}

/* float 32/64 or any integer, finite or not. */
static bool as_any_number(const msgpack_object *o, double *out) {
    int64_t integer;
    if (o == NULL) return false;
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) {
        *out = o->via.f64;
        return true;
    }
    if (as_int(o, &integer)) {
        *out = (double)integer;
        return true;
    }
    return false;
}

/* "float" in the protocol: always finite. */
static bool as_number(const msgpack_object *o, double *out) { return as_any_number(o, out) && isfinite(*out); }

static bool is_str(const msgpack_object *o) { return o != NULL && o->type == MSGPACK_OBJECT_STR; }

static bool str_equals(const msgpack_object *o, const char *text) {
    return is_str(o) && o->via.str.size == strlen(text) && memcmp(o->via.str.ptr, text, o->via.str.size) == 0;
}

enum verdict { BAD_MESSAGE, EXPIRED, WRONG_DIM, NON_FINITE, STALE_SEQ, RETIRED_SESSION, COMMAND, STOP, HEARTBEAT,
               VERDICTS };
static const char *const VERDICT_NAMES[VERDICTS] = {"bad_messages", "expired",  "wrong_dim", "non_finite",
                                                    "stale_seq",    "retired_session", "commands", "stops",
                                                    "heartbeats"};

/* A runtime session: the optional "session" field of commands and stops; size 0 for a sender without one. */
struct session {
    size_t size;
    char bytes[MAX_SESSION_BYTES];
};

struct command {
    int64_t seq;
    struct session session;
    double action[ACTION_DIM];
};

/* Absent, or a str of 1 to 64 bytes. */
static bool read_session(const msgpack_object_map *m, struct session *session) {
    const msgpack_object *o = field(m, "session");
    session->size = 0;
    if (o == NULL) return true;
    if (!is_str(o) || o->via.str.size == 0 || o->via.str.size > MAX_SESSION_BYTES) return false;
    session->size = o->via.str.size;
    memcpy(session->bytes, o->via.str.ptr, session->size);
    return true;
}

static enum verdict classify(const msgpack_object_map *m, struct command *command) {
    int64_t version, stamp_send, stamp_capture;
    double ttl_ms, action[ACTION_DIM];
    bool finite = true;
    const msgpack_object *type = field(m, "type");
    if (!as_int(field(m, "v"), &version) || version != PROTOCOL_VERSION) return BAD_MESSAGE;
    if (!is_str(type) || !as_int(field(m, "seq"), &command->seq)) return BAD_MESSAGE;
    if (str_equals(type, "stop"))
        return as_int(field(m, "stamp_send"), &stamp_send) && is_str(field(m, "reason")) &&
                       read_session(m, &command->session)
                   ? STOP
                   : BAD_MESSAGE;
    if (str_equals(type, "heartbeat"))
        return as_int(field(m, "stamp_send"), &stamp_send) && is_str(field(m, "sender")) ? HEARTBEAT : BAD_MESSAGE;
    if (!str_equals(type, "command")) return BAD_MESSAGE; /* unknown type, or one not for this stream */

    const msgpack_object *values = field(m, "action");
    if (!as_int(field(m, "stamp_send"), &stamp_send) || !as_int(field(m, "stamp_capture"), &stamp_capture) ||
        !as_number(field(m, "ttl_ms"), &ttl_ms) || !(ttl_ms > 0) || !read_session(m, &command->session))
        return BAD_MESSAGE;
    if (values == NULL || values->type != MSGPACK_OBJECT_ARRAY || values->via.array.size == 0) return BAD_MESSAGE;
    for (uint32_t i = 0; i < values->via.array.size; i++) {
        double value;
        if (!as_any_number(&values->via.array.ptr[i], &value)) return BAD_MESSAGE;
        finite = finite && isfinite(value);
        if (i < ACTION_DIM) action[i] = value;
    }
    if (!finite) return NON_FINITE; /* valid but for its action: its sender has lost track, hold still now */
    if (values->via.array.size != ACTION_DIM) return WRONG_DIM;
    if ((double)(epoch_ns() - stamp_send) > ttl_ms * 1e6) return EXPIRED; /* on our clock */
    memcpy(command->action, action, sizeof action);
    return COMMAND;
}

/* ---- order: only commands newer than the last of their session, and only the newest session -------- */

struct order {
    bool any; /* a command or stop was seen */
    struct session owner;
    int64_t newest_seq;
    struct session retired[RETIRED_SESSIONS];
    int retired_count, retired_next;
};

static bool same_session(const struct session *a, const struct session *b) {
    return a->size == b->size && memcmp(a->bytes, b->bytes, a->size) == 0;
}

/* COMMAND when in order (the message becomes the newest of its session), else STALE_SEQ or RETIRED_SESSION. */
static enum verdict judge_order(struct order *order, const struct command *message) {
    if (order->any && same_session(&order->owner, &message->session)) {
        if (message->seq <= order->newest_seq) return STALE_SEQ;
        order->newest_seq = message->seq;
        return COMMAND;
    }
    for (int i = 0; i < order->retired_count; i++)
        if (same_session(&order->retired[i], &message->session)) return RETIRED_SESSION;
    if (order->any) {
        fprintf(stderr, "runtime session '%.*s' replaces '%.*s': the old session's commands are refused\n",
                (int)message->session.size, message->session.bytes, (int)order->owner.size, order->owner.bytes);
        order->retired[order->retired_next] = order->owner;
        order->retired_next = (order->retired_next + 1) % RETIRED_SESSIONS;
        if (order->retired_count < RETIRED_SESSIONS) order->retired_count++;
    }
    order->any = true;
    order->owner = message->session;
    order->newest_seq = message->seq;
    return COMMAND;
}

static enum verdict decode(const char *data, size_t size, struct command *command) {
    msgpack_unpacked message;
    size_t offset = 0;
    enum verdict verdict = BAD_MESSAGE;
    msgpack_unpacked_init(&message);
    if (msgpack_unpack_next(&message, data, size, &offset) == MSGPACK_UNPACK_SUCCESS && offset == size &&
        message.data.type == MSGPACK_OBJECT_MAP)
        verdict = classify(&message.data.via.map, command);
    msgpack_unpacked_destroy(&message);
    return verdict;
}

/* ---- encoding -------------------------------------------------------------------------------- */

static void pack_str(msgpack_packer *packer, const char *text) {
    size_t length = strlen(text);
    msgpack_pack_str(packer, length);
    msgpack_pack_str_body(packer, text, length);
}

static void pack_floats(msgpack_packer *packer, const double *values, size_t count) {
    msgpack_pack_array(packer, count);
    for (size_t i = 0; i < count; i++) msgpack_pack_double(packer, values[i]);
}

static void publish_state(void *socket, int64_t seq, const double *q, const double *dq, bool stopped,
                          int64_t last_command_seq) {
    msgpack_sbuffer buffer;
    msgpack_packer packer;
    msgpack_sbuffer_init(&buffer);
    msgpack_packer_init(&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map(&packer, 9);
    pack_str(&packer, "v");
    msgpack_pack_int64(&packer, PROTOCOL_VERSION);
    pack_str(&packer, "type");
    pack_str(&packer, "state");
    pack_str(&packer, "seq");
    msgpack_pack_int64(&packer, seq);
    pack_str(&packer, "stamp");
    msgpack_pack_int64(&packer, epoch_ns());
    pack_str(&packer, "q");
    pack_floats(&packer, q, ACTION_DIM);
    pack_str(&packer, "dq");
    pack_floats(&packer, dq, ACTION_DIM);
    pack_str(&packer, "ee");
    msgpack_pack_array(&packer, 0); /* unknown for the toy robot */
    pack_str(&packer, "stopped");
    if (stopped)
        msgpack_pack_true(&packer);
    else
        msgpack_pack_false(&packer);
    pack_str(&packer, "last_command_seq");
    msgpack_pack_int64(&packer, last_command_seq);
    zmq_send(socket, buffer.data, buffer.size, ZMQ_DONTWAIT); /* one frame; a PUB never blocks */
    msgpack_sbuffer_destroy(&buffer);
}

/* ---- CURVE security: keys from the environment, a ZAP handler with an allowlist ----------------- */

#define KEY_BYTES 32
#define Z85_KEY_CHARS 40
#define MAX_CLIENTS 64
#define ZAP_DOMAIN "edgeloop"

struct security {
    bool enabled;
    char secret_key[Z85_KEY_CHARS + 1];
    uint8_t clients[MAX_CLIENTS][KEY_BYTES];
    int client_count;
    uint8_t logged[MAX_CLIENTS][KEY_BYTES]; /* refused keys already logged */
    int logged_count;
    long refused;
};

/* Fails (exit 1) on a malformed key: a controller asked to be secure never runs open. */
static void read_security(struct security *security) {
    const char *secret = getenv("EDGELOOP_CURVE_SECRET_KEY"), *clients = getenv("EDGELOOP_CURVE_CLIENTS");
    uint8_t decoded[KEY_BYTES];
    memset(security, 0, sizeof *security);
    if (secret == NULL) return;
    if (strlen(secret) != Z85_KEY_CHARS || zmq_z85_decode(decoded, secret) == NULL) {
        fprintf(stderr, "EDGELOOP_CURVE_SECRET_KEY: not a 40-character Z85 CURVE key\n");
        exit(1);
    }
    memcpy(security->secret_key, secret, Z85_KEY_CHARS + 1);
    for (const char *key = clients; key != NULL && *key != '\0';) {
        const char *end = strchr(key, ',');
        size_t length = end != NULL ? (size_t)(end - key) : strlen(key);
        char text[Z85_KEY_CHARS + 1] = "";
        if (length != Z85_KEY_CHARS || security->client_count == MAX_CLIENTS) {
            fprintf(stderr, "EDGELOOP_CURVE_CLIENTS: expected up to %d comma-separated 40-character Z85 keys\n",
                    MAX_CLIENTS);
            exit(1);
        }
        memcpy(text, key, Z85_KEY_CHARS);
        if (zmq_z85_decode(security->clients[security->client_count++], text) == NULL) {
            fprintf(stderr, "EDGELOOP_CURVE_CLIENTS: %s is not a Z85 CURVE key\n", text);
            exit(1);
        }
        key = end != NULL ? end + 1 : NULL;
    }
    if (security->client_count == 0) {
        fprintf(stderr, "EDGELOOP_CURVE_SECRET_KEY is set but EDGELOOP_CURVE_CLIENTS lists no client key\n");
        exit(1);
    }
    security->enabled = true;
}

static bool key_in(const uint8_t (*keys)[KEY_BYTES], int count, const uint8_t *key) {
    for (int i = 0; i < count; i++)
        if (memcmp(keys[i], key, KEY_BYTES) == 0) return true;
    return false;
}

static void send_frame(void *socket, const void *data, size_t size, bool more) {
    zmq_send(socket, data, size, more ? ZMQ_SNDMORE : 0);
}

/* One ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism, credentials. */
static void answer_zap(void *zap, struct security *security) {
    char frames[7][256];
    int sizes[7], count = 0, more = 1;
    size_t more_size = sizeof more;
    while (more) {
        int size = zmq_recv(zap, count < 7 ? frames[count] : frames[6], sizeof frames[0], 0);
        if (size < 0) return;
        if (count < 7) sizes[count++] = size < (int)sizeof frames[0] ? size : (int)sizeof frames[0];
        zmq_getsockopt(zap, ZMQ_RCVMORE, &more, &more_size);
    }
    bool curve = count == 7 && sizes[5] == 5 && memcmp(frames[5], "CURVE", 5) == 0 && sizes[6] == KEY_BYTES;
    const uint8_t *key = (const uint8_t *)frames[6];
    bool allowed = curve && key_in((const uint8_t (*)[KEY_BYTES])security->clients, security->client_count, key);
    if (!allowed) {
        security->refused++;
        if (curve && !key_in((const uint8_t (*)[KEY_BYTES])security->logged, security->logged_count, key) &&
            security->logged_count < MAX_CLIENTS) {
            char text[Z85_KEY_CHARS + 1];
            memcpy(security->logged[security->logged_count++], key, KEY_BYTES);
            zmq_z85_encode(text, key, KEY_BYTES);
            fprintf(stderr, "refused a CURVE client from %.*s: key %s is not allowed (logged once per key)\n",
                    sizes[3], frames[3], text);
        }
    }
    send_frame(zap, "1.0", 3, true);
    send_frame(zap, frames[1], count > 1 ? (size_t)sizes[1] : 0, true);
    send_frame(zap, allowed ? "200" : "400", 3, true);
    send_frame(zap, allowed ? "OK" : "key not allowed", allowed ? 2 : 15, true);
    send_frame(zap, "", 0, true);  /* user id */
    send_frame(zap, "", 0, false); /* metadata */
}

/* ---- sockets --------------------------------------------------------------------------------- */

static void *bind_socket(void *context, int type, const char *endpoint, const struct security *security,
                         char *bound, size_t bound_size) {
    void *socket = zmq_socket(context, type);
    int linger = 0;
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    if (security->enabled) {
        int server = 1;
        zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &server, sizeof server);
        zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, security->secret_key, Z85_KEY_CHARS);
        zmq_setsockopt(socket, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN));
    }
    if (type == ZMQ_SUB) {
        int64_t max_size = MAX_MESSAGE_BYTES;
        int queue = 1000;
        zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size);
        zmq_setsockopt(socket, ZMQ_RCVHWM, &queue, sizeof queue);
        zmq_setsockopt(socket, ZMQ_SUBSCRIBE, "", 0);
    }
    if (zmq_bind(socket, endpoint) != 0) {
        fprintf(stderr, "cannot bind %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        exit(1);
    }
    zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, bound, &bound_size);
    return socket;
}

int main(int argc, char **argv) {
    const char *command_endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:5555";
    const char *state_endpoint = argc > 2 ? argv[2] : "tcp://127.0.0.1:5556";
    double watchdog_s = (argc > 3 ? atof(argv[3]) : 300.0) / 1000.0;
    char command_bound[256] = "", state_bound[256] = "";
    long counts[VERDICTS] = {0}, watchdog_stops = 0;

    struct sigaction action = {0};
    action.sa_handler = on_signal;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    struct security security;
    read_security(&security);
    void *context = zmq_ctx_new();
    void *zap = NULL; /* the ZAP handler must be bound on the sockets' context before they accept anyone */
    if (security.enabled) {
        zap = zmq_socket(context, ZMQ_REP);
        if (!zmq_has("curve") || zmq_bind(zap, "inproc://zeromq.zap.01") != 0) {
            fprintf(stderr, "cannot set up CURVE security: libzmq %s\n",
                    zmq_has("curve") ? zmq_strerror(zmq_errno()) : "was built without CURVE");
            return 1;
        }
    }
    void *commands = bind_socket(context, ZMQ_SUB, command_endpoint, &security, command_bound, sizeof command_bound);
    void *states = bind_socket(context, ZMQ_PUB, state_endpoint, &security, state_bound, sizeof state_bound);
    printf("{\"event\": \"ready\", \"command\": \"%s\", \"state\": \"%s\"}\n", command_bound, state_bound);
    fflush(stdout);

    double q[ACTION_DIM] = {0}, velocity[ACTION_DIM] = {0};
    struct order order = {0};
    bool moving = false; /* executing a command; false before the first one, after a stop or the watchdog */
    int64_t last_command_seq = -1, state_seq = 0;
    double now = monotonic_s(), last_step = now, last_command_at = now, next_state = now;
    char *payload = malloc(MAX_MESSAGE_BYTES);
    if (payload == NULL) return 1;

    while (running) {
        zmq_pollitem_t items[2] = {{commands, 0, ZMQ_POLLIN, 0}, {zap, 0, ZMQ_POLLIN, 0}};
        long wait_ms = (long)((next_state - monotonic_s()) * 1000.0);
        zmq_poll(items, zap != NULL ? 2 : 1, wait_ms > 0 ? wait_ms : 0);
        if (zap != NULL && (items[1].revents & ZMQ_POLLIN)) answer_zap(zap, &security);

        /* Latest only: drain everything waiting, act on the newest valid command or stop (a command with a
         * non-finite action acts as a stop). Stops are obeyed whatever their seq or session. */
        enum verdict newest = BAD_MESSAGE;
        struct command command, newest_command = {0};
        int size;
        while ((size = zmq_recv(commands, payload, MAX_MESSAGE_BYTES, ZMQ_DONTWAIT)) >= 0) {
            enum verdict verdict = size > MAX_MESSAGE_BYTES ? BAD_MESSAGE : decode(payload, (size_t)size, &command);
            if (verdict == COMMAND || verdict == STOP) {
                enum verdict ordered = judge_order(&order, &command);
                if (verdict == COMMAND) verdict = ordered;
            }
            counts[verdict]++;
            if (verdict == NON_FINITE) fprintf(stderr, "command %lld: non-finite action, holding still\n",
                                               (long long)command.seq);
            if (verdict == COMMAND) newest_command = command;
            if (verdict == COMMAND || verdict == STOP) newest = verdict;
            if (verdict == NON_FINITE) newest = STOP;
        }

        now = monotonic_s();
        if (newest == COMMAND) {
            memcpy(velocity, newest_command.action, sizeof velocity);
            moving = true;
            last_command_seq = newest_command.seq;
            last_command_at = now;
        } else if (newest == STOP) {
            memset(velocity, 0, sizeof velocity);
            moving = false;
        }
        if (moving && now - last_command_at > watchdog_s) {
            memset(velocity, 0, sizeof velocity);
            moving = false;
            watchdog_stops++;
            fprintf(stderr, "watchdog: no valid command for %.0f ms, holding still\n", watchdog_s * 1000.0);
        }

        for (int i = 0; i < ACTION_DIM; i++) q[i] += velocity[i] * (now - last_step);
        last_step = now;

        if (now >= next_state) {
            publish_state(states, state_seq++, q, velocity, !moving, last_command_seq);
            next_state += STATE_PERIOD_S;
            if (next_state < now) next_state = now + STATE_PERIOD_S; /* fell behind: do not burst */
        }
    }

    printf("{\"event\": \"exit\", \"counters\": {");
    for (int i = 0; i < VERDICTS; i++) printf("\"%s\": %ld, ", VERDICT_NAMES[i], counts[i]);
    printf("\"refused_unknown_key\": %ld, ", security.refused);
    printf("\"watchdog_stops\": %ld, \"states_sent\": %lld}}\n", watchdog_stops, (long long)state_seq);
    fflush(stdout);
    free(payload);
    zmq_close(commands);
    zmq_close(states);
    if (zap != NULL) zmq_close(zap);
    zmq_ctx_term(context);
    return 0;
}
