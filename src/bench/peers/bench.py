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
