"""CPython peer of `koru-jit bench --peers`, written the obvious way.

The peer protocol on stdin/stdout: prints `ready <version>`, then for each workload name read
from stdin runs one round and prints `ok <operations> <ns>`, `skip` or `error <message>`.
Results are checked, so a broken peer cannot look fast.
"""
import sys
import time

acc = 0


def parse(text):
    return int(text)


def add(a, b):
    global acc
    s = parse(a) + parse(b)
    acc += s
    return s


def add_typed(a, b):
    global acc
    acc += a + b
    return a + b


def multiply(a, b):
    return parse(a) * parse(b)


def subtract(a, b):
    return parse(a) - parse(b)


ENV = {"add": add, "multiply": multiply, "subtract": subtract}
THREE_STEPS = ['add("10", "20")', 'multiply("30", "3")', 'subtract("90", "5")']
WANT = [30, 90, 85]
CACHED = [compile(s, "<flow>", "eval") for s in THREE_STEPS]


def nested_loop():
    for outer in range(1000):
        for i in range(100):
            add("0", str(i))


def nested_loop_typed():
    for outer in range(1000):
        for i in range(100):
            add_typed(0, i)


def sum_fold():
    total = 0
    for i in range(1000000):
        total += i
    return total


def collatz():
    total = 0
    for n in range(1, 3001):
        x = n
        s = 0
        while x != 1:
            x = x // 2 if x % 2 == 0 else 3 * x + 1
            s += 1
        total += s
    return total


def fib_pair():
    a, b = 0, 1
    for _ in range(1000000):
        a, b = b, (a + b) % 1000000007
    return a


def primes():
    count = 0
    for n in range(2, 20000):
        d = 2
        prime = True
        while prime and d * d <= n:
            prime = n % d != 0
            d += 1
        if prime:
            count += 1
    return count


def float_series():
    s = 0.0
    for k in range(1, 1000001):
        s += 1.0 / (float(k) * float(k))
    return s


def str_machine():
    state = "idle"
    count = 0
    for i in range(1000000):
        if state == "idle":
            nxt = "run"
        elif state == "run":
            nxt = "stop" if i % 7 == 0 else "run"
        else:
            nxt = "idle"
        if state == "stop":
            count += 1
        state = nxt
    return count


# The pure workloads: function, expected result, operations per round (as bench/pure.rs).
PURE = {
    "collatz": (collatz, 215063, 215063),
    "fib-pair": (fib_pair, 918091266, 1000000),
    "primes": (primes, 2262, 301275),
    "float-series": (float_series, 1.64493306684877, 1000000),
    "str-machine": (str_machine, 142856, 1000000),
}


def check(workload, got, want):
    if got != want:
        raise ValueError(f"{workload}: got {got}, expected {want}")


def round_of(workload):
    global acc
    if workload in ("nested-loop", "nested-loop-typed"):
        acc = 0
        (nested_loop if workload == "nested-loop" else nested_loop_typed)()
        check(workload, acc, 4950000)
        return 100000
    if workload == "three-step-cold":
        for _ in range(1000):
            for source, want in zip(THREE_STEPS, WANT):
                check(workload, eval(source, ENV), want)
        return 3000
    if workload == "three-step-cached":
        for _ in range(10000):
            for code, want in zip(CACHED, WANT):
                check(workload, eval(code, ENV), want)
        return 30000
    if workload == "sum-fold":
        check(workload, sum_fold(), 499999500000)
        return 1000000
    if workload in PURE:
        function, want, operations = PURE[workload]
        check(workload, function(), want)
        return operations
    return None


def main():
    print("ready CPython " + sys.version.split()[0], flush=True)
    for line in sys.stdin:
        workload = line.strip()
        try:
            started = time.perf_counter_ns()
            operations = round_of(workload)
            elapsed = time.perf_counter_ns() - started
            print("skip" if operations is None else f"ok {operations} {elapsed}", flush=True)
        except Exception as error:  # reported to the parent, never a crash
            print("error " + str(error).replace("\n", " "), flush=True)


main()
