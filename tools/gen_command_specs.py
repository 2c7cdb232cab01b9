"""Writes src/commands/spec.rs, Redis's command reference, from the src/commands/*.json files of
Redis 7.0.15's source (the directory given, by default where `apt-get source redis` was run in
/tmp/redis-src) and the newer commands in tools/commands-7.2.

Usage: python3 tools/gen_command_specs.py [redis-src/src/commands] > src/commands/spec.rs
       rustfmt --edition 2024 src/commands/spec.rs

The tables hold no pointers: every string is a range of one text (`Text`) and every list of
arguments, key specs or history entries a range of one table (`List`), so that a
position-independent executable needs no relocations for them (see `meta::Text`).
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [
    sys.argv[1] if len(sys.argv) > 1 else '/tmp/redis-src/redis-7.0.15/src/commands',
    os.path.join(HERE, 'commands-7.2'),
]


def load(directory):
    cmds = {}
    for f in sorted(glob.glob(directory + '/*.json')):
        for name, c in json.load(open(f)).items():
            # Names, flags, categories and tips in lower case, as Redis replies with them.
            c['name'] = name.lower()
            if c.get('container'):
                c['container'] = c['container'].lower()
            for field in ('doc_flags', 'command_flags', 'acl_categories', 'command_tips'):
                c[field] = [x.lower() for x in c.get(field, [])]
            cmds[(c['container'] + '|' if c.get('container') else '') + c['name']] = c
    return [cmds[key] for key in sorted(cmds)]


text_pieces = []
text_index = {}
text_len = 0


def text(s):
    """`Text(at, len)` of `s` in TEXT, adding it the first time."""
    global text_len
    if s not in text_index:
        quoted = json.dumps(s, ensure_ascii=False)
        # JSON's \b, \f and \uXXXX escapes are not Rust's.
        assert '\\u' not in quoted and '\\b' not in quoted and '\\f' not in quoted, s
        text_index[s] = (text_len, len(s.encode()))
        text_pieces.append(quoted)
        text_len += len(s.encode())
    return 'Text(%d, %d)' % text_index[s]


def opt(s):
    return 'None' if s is None else 'Some(%s)' % text(s)


def words(xs):
    assert all(' ' not in x for x in xs), xs
    return 'Words(%s)' % text(' '.join(xs))


ARGS = []
KEY_SPECS = []
HISTORY = []


def arg_list(args):
    """Puts `args` side by side in ARGS (their own arguments after them); their `List`."""
    at = len(ARGS)
    ARGS.extend([None] * len(args))
    for i, a in enumerate(args):
        flags = [f for f in ('optional', 'multiple', 'multiple_token') if a.get(f)]
        ARGS[at + i] = (
            'Arg { name: %s, kind: %s, key_spec_index: %d, token: %s, summary: %s, since: %s, '
            'deprecated_since: %s, flags: %s, args: %s }' % (
                text(a['name']), text(a['type']), a.get('key_spec_index', -1),
                opt(a.get('token')), opt(a.get('summary')), opt(a.get('since')),
                opt(a.get('deprecated_since')), words(flags), arg_list(a.get('arguments', []))))
    return 'List::new(%d, %d)' % (at, len(args))


def key_spec(k):
    bs = k.get('begin_search', {})
    if 'index' in bs:
        begin = 'BeginSearch::Index(%d)' % bs['index']['pos']
    elif 'keyword' in bs:
        begin = 'BeginSearch::Keyword { keyword: %s, startfrom: %d }' % (
            text(bs['keyword']['keyword']), bs['keyword']['startfrom'])
    else:
        begin = 'BeginSearch::Unknown'
    fk = k.get('find_keys', {})
    if 'range' in fk:
        r = fk['range']
        find = 'FindKeys::Range { lastkey: %d, step: %d, limit: %d }' % (
            r['lastkey'], r['step'], r['limit'])
    elif 'keynum' in fk:
        r = fk['keynum']
        find = 'FindKeys::Keynum { keynumidx: %d, firstkey: %d, step: %d }' % (
            r['keynumidx'], r['firstkey'], r['step'])
    else:
        find = 'FindKeys::Unknown'
    return 'KeySpec { notes: %s, flags: %s, begin_search: %s, find_keys: %s }' % (
        opt(k.get('notes')), words(k.get('flags', [])), begin, find)


def table_list(table, items):
    at = len(table)
    table.extend(items)
    return 'List::new(%d, %d)' % (at, len(items))


def spec(c):
    cont = c.get('container')
    history = [
        '(%s, %s)' % (text(v), text(t)) for v, t in c.get('history', []) or []
    ]
    return '\n'.join([
        '    // %s' % ((cont + '|' if cont else '') + c['name']),
        '    CommandSpec {',
        '        name: %s, container: %s,' % (text(c['name']), opt(cont)),
        '        summary: %s, since: %s, group: %s, complexity: %s,' % (
            text(c.get('summary', '')), text(c.get('since', '')), text(c['group']),
            opt(c.get('complexity'))),
        '        doc_flags: %s, deprecated_since: %s, replaced_by: %s,' % (
            words(c['doc_flags']), opt(c.get('deprecated_since')),
            opt(c.get('replaced_by'))),
        '        history: %s,' % table_list(HISTORY, history),
        '        arity: %d, flags: %s, acl_categories: %s, tips: %s,' % (
            c['arity'], words(c['command_flags']), words(c['acl_categories']),
            words(c['command_tips'])),
        '        key_specs: %s,' % table_list(
            KEY_SPECS, [key_spec(k) for k in c.get('key_specs', [])]),
        '        args: %s,' % arg_list(c.get('arguments', [])),
        '    },',
    ])


commands = [c for source in SOURCES for c in load(source)]
# What the server reads of every command as it starts goes first in TEXT, the documentation
# after: an empty server then has only the start of TEXT in memory.
for c in commands:
    text(c['name'])
    opt(c.get('container'))
    words(c['command_flags'])
    words(c['acl_categories'])
    for k in c.get('key_specs', []):
        words(k.get('flags', []))
specs = [spec(c) for c in commands]
print("// Redis's command reference (arity, flags, ACL categories, key specs, docs): Redis 7.0.15's")
print('// and the few newer commands that clients send, generated by tools/gen_command_specs.py.')
print('// Do not edit by hand.')
print('use super::meta::{Arg, BeginSearch, CommandSpec, FindKeys, KeySpec, List, Text, Words};\n')
print('/// Every string of the tables below, once; they hold ranges of it.')
print('pub static TEXT: &str = concat!(')
line = []
for piece in text_pieces:
    if line and sum(len(p) + 2 for p in line) + len(piece) > 90:
        print('    %s,' % ', '.join(line))
        line = []
    line.append(piece)
print('    %s,' % ', '.join(line))
print(');\n')
print('pub static SPECS: [CommandSpec; %d] = [' % len(specs))
print('\n'.join(specs))
print('];\n')
for name, kind, rows in [('ARGS', 'Arg', ARGS), ('KEY_SPECS', 'KeySpec', KEY_SPECS),
                         ('HISTORY', '(Text, Text)', HISTORY)]:
    print('pub static %s: [%s; %d] = [' % (name, kind, len(rows)))
    for row in rows:
        print('    %s,' % row)
    print('];\n')
