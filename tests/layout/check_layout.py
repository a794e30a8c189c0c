#!/usr/bin/python3
"""The dependency rule of src/ and include/epmoe/, checked: a folder includes only headers of the folders it
may depend on (the DAG below, the same as the libraries CMakeLists.txt links), base/, io/ and ops/ never
include <mpi.h>, and no file or function outgrows the size limits of STYLE.md (400 and 60 lines). One line
per breach; exit 1 if any.

    check_layout.py [ROOT]      ROOT: the repository (default: this file's ../..)
"""
import os
import re
import sys

# folder -> the folders it may include (besides itself): CMakeLists.txt's epmoe_library() links, closed
# transitively. app/ may include all of them.
DEPENDS = {
    "base": set(),
    "io": {"base"},
    "ops": {"base"},
    "text": {"base"},
    "sim": {"base", "ops"},
    "comm": {"base", "ops", "sim"},
    "moe": {"base", "ops", "sim", "comm"},
    "model": {"base", "io", "ops", "sim", "comm", "moe"},
    "train": {"base", "io", "ops", "sim", "comm", "moe", "model"},
    "energy": {"base", "ops", "sim", "comm"},
    "control": {"base", "io", "ops", "sim", "comm", "moe", "model", "energy"},
}
DEPENDS["app"] = set(DEPENDS) | {"app"}
NO_MPI = {"base", "io", "ops", "text"}  # pure compute and files: no <mpi.h>
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
INCLUDE = re.compile(r'#\s*include\s*[<"]([^>"]+)[>"]')
# A line that opens a block which is not a function: namespaces, types, control flow.
NOT_FUNCTION = re.compile(r"(namespace|struct|class|enum|union|if|for|while|switch|else|do|try|catch|extern|"
                          r"template\s*<[^>]*>\s*(struct|class))\b")


def functions(lines):
    """(first line, line count, head) of each function defined at namespace or class level (indentation <= 4
    spaces, the body closed by a '}' at the same indentation), as this repository's format writes them."""
    i = 0
    while i < len(lines):
        m = re.match(r"^( {0,4})(\S.*)$", lines[i])
        if (not m or lines[i].strip().startswith(("//", "#", "}", "public:", "private:", "protected:"))
                or NOT_FUNCTION.match(m.group(2))):
            i += 1
            continue
        indent, j, statement = m.group(1), i, lines[i]
        while not statement.rstrip().endswith(("{", ";", "}")) and j + 1 < len(lines) and j - i < 8:
            j += 1
            statement += " " + lines[j].strip()
        if statement.rstrip().endswith("{") and "(" in statement and "=" not in statement.split("(")[0]:
            k = j + 1
            while k < len(lines) and not re.match("^" + indent + r"\}", lines[k]):
                k += 1
            name = re.search(r"([\w:~]+)\s*\(", statement)
            yield i + 1, k - i + 1, name.group(1) if name else m.group(2).strip()[:40]
            i = k + 1
        else:
            i = j + 1


def folder_of(root, path):
    rel = os.path.relpath(path, root).split(os.sep)
    if rel[0] == "src":
        return rel[1]
    if rel[:2] == ["include", "epmoe"]:
        return rel[2]
    return None


def check_file(root, path, breaches):
    folder = folder_of(root, path)
    if folder not in DEPENDS:
        breaches.append(f"{path}: folder '{folder}' is not in the dependency table of {__file__}")
        return
    lines = open(path, encoding="utf-8").read().splitlines()
    if len(lines) > MAX_FILE_LINES:
        breaches.append(f"{path}: {len(lines)} lines (at most {MAX_FILE_LINES})")
    for first, count, name in functions(lines):
        if count > MAX_FUNCTION_LINES:
            breaches.append(f"{path}:{first}: function {name} is {count} lines (at most {MAX_FUNCTION_LINES})")
    for number, line in enumerate(lines, 1):
        m = INCLUDE.match(line.strip())
        if not m:
            continue
        target = m.group(1)
        if target == "mpi.h" and folder in NO_MPI:
            breaches.append(f"{path}:{number}: {folder}/ includes <mpi.h> (it is pure compute, no MPI)")
        if target.startswith("epmoe/"):
            dep = target.split("/")[1]
            if dep != folder and dep not in DEPENDS[folder]:
                breaches.append(f"{path}:{number}: {folder}/ includes {target}, a folder above it "
                                f"({folder} may include {', '.join(sorted(DEPENDS[folder])) or 'nothing'})")
        elif target.startswith("app/") and folder != "app":
            breaches.append(f"{path}:{number}: {folder}/ includes {target}: src/app/ headers are the application's own")


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
    breaches, files = [], 0
    for top in ("src", os.path.join("include", "epmoe")):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if name.endswith((".cpp", ".hpp")):
                    files += 1
                    check_file(root, os.path.join(dirpath, name), breaches)
    for b in breaches:
        print(b)
    print(f"check_layout: {files} files, {len(breaches)} breaches")
    return 1 if breaches or files == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
