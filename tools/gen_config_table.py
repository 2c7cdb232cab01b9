import re
src = open('/tmp/redis-src/redis-7.0.15/src/config.c').read()
# enums
enums = {}
for m in re.finditer(r'configEnum (\w+)\[\] = \{(.*?)\{NULL', src, re.S):
    enums[m.group(1)] = re.findall(r'\{"([^"]+)",\s*(\w+)\}', m.group(2))
body = src[src.index('standardConfig static_configs[] = {'):]
body = body[:body.index('/* NULL Terminator')]
consts = {'INT_MAX':2**31-1,'INT_MIN':-2**31,'LONG_MAX':2**63-1,'LLONG_MAX':2**63-1,'UINT_MAX':2**32-1,'ULLONG_MAX':2**63-1,'SSIZE_MAX':2**63-1,'CONFIG_DEFAULT_HZ':10}
def ev(x):
    x = x.strip()
    for k,v in consts.items(): x = re.sub(r'\b%s\b'%k, str(v), x)
    x = x.replace('ll','')
    return int(eval(x.replace('0777','0o777')))
out = []
calls = re.findall(r'create(\w+)Config\((.*?)\),?\s*(?:/\*.*?\*/)?\s*\n', body)
for typ, args in calls:
    a = [s.strip() for s in re.split(r',(?![^()]*\))', args)]
    name = a[0].strip('"'); alias = a[1].strip('"') if a[1] != 'NULL' else None
    flags = a[2]
    modifiable = 'IMMUTABLE_CONFIG' not in flags
    prot = 'PROTECTED_CONFIG' in flags
    sens = 'SENSITIVE_CONFIG' in flags
    hidden = 'HIDDEN_CONFIG' in flags
    multi = 'MULTI_ARG_CONFIG' in flags
    if typ == 'Bool':
        kind = 'Kind::Bool'; default = 'yes' if a[4] == '1' else 'no'
    elif typ == 'Enum':
        vals = enums[a[3]]
        kind = 'Kind::Enum(&[%s])' % ', '.join('"%s"'%v for v,_ in vals)
        d = a[5]
        default = next((v for v,c in vals if c == d), None)
        if default is None: default = {'0':'default' if 'shutdown' in name else 'resetchannels'}.get(d)
        if name.startswith('shutdown-on'): default='default'
        if name == 'acl-pubsub-default': default='resetchannels'
    elif typ in ('String','SDS'):
        kind = 'Kind::Text'; d = a[5]
        default = '' if d == 'NULL' else d.strip('"')
        if d == 'CONFIG_DEFAULT_PROC_TITLE_TEMPLATE': default = '{title} {listen-addr} {server-mode}'
    elif typ == 'Special':
        kind = 'Kind::Special'
        default = {'dir':'','save':'3600 1 300 100 60 10000','client-output-buffer-limit':'normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60','oom-score-adj-values':'0 200 800','notify-keyspace-events':'','bind':'* -::*','replicaof':'','latency-tracking-info-percentiles':'50 99 99.9'}[name]
    else:
        lo, hi, d, fmt = ev(a[3]), ev(a[4]), ev(a[6]), a[7]
        unit = 'Unit::Memory' if 'MEMORY_CONFIG' in fmt else ('Unit::Octal' if 'OCTAL' in fmt else 'Unit::Plain')
        if 'PERCENT' in fmt: unit = 'Unit::MemoryOrPercent'
        kind = 'Kind::Int { min: %d, max: %d, unit: %s }' % (lo, hi, unit)
        default = ('%o' % d) if unit == 'Unit::Octal' else str(d)
    out.append((name, alias, kind, default, modifiable, prot, sens, hidden, multi))
out.sort()
print('// Every configuration setting Redis 7.0 knows, with its default and bounds, generated from')
print('// the standardConfig table in Redis\'s config.c so that any redis.conf loads unchanged.')
print('use super::{Kind, Setting, Unit};\n')
print('pub static SETTINGS: &[Setting] = &[')
for (name, alias, kind, default, mod, prot, sens, hidden, multi) in out:
    print('    Setting { name: "%s", alias: %s, kind: %s, default: "%s", modifiable: %s, protected: %s, sensitive: %s, hidden: %s, multi_arg: %s },' % (name, ('Some("%s")'%alias) if alias else 'None', kind, default, str(mod).lower(), str(prot).lower(), str(sens).lower(), str(hidden).lower(), str(multi).lower()))
print('];\n')
for i,(name,*_) in enumerate(out):
    print('pub const %s: usize = %d;' % (re.sub(r'[^A-Z0-9]','_',name.upper()), i))
