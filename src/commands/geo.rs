//! Geo commands (Redis's geo.c): points are sorted-set members scored with their 52-bit
//! geohash (`util::geohash`), so GEOADD is a ZADD and searches scan score ranges.

use bytes::Bytes;

use super::zsets::{self, zset_mut};
use super::{CmdResult, Ctx, Error, NOT_FLOAT, NOT_INTEGER, SYNTAX};
use crate::store::Zset;
use crate::util::geohash::{self, Extent, Shape};
use crate::util::{eq_ignore_case, format_fixed4, format_long_double_human, parse_f64, parse_i64};

const BAD_MEMBER: &str = "ERR could not decode requested zset member";

/// A longitude and latitude argument pair within Redis's limits.
fn lon_lat(args: &[Bytes]) -> Result<(f64, f64), Error> {
    let lon = parse_f64(&args[0]).ok_or(Error::from(NOT_FLOAT))?;
    let lat = parse_f64(&args[1]).ok_or(Error::from(NOT_FLOAT))?;
    if !(geohash::LONG_MIN..=geohash::LONG_MAX).contains(&lon)
        || !(geohash::LAT_MIN..=geohash::LAT_MAX).contains(&lat)
    {
        return Err(format!("ERR invalid longitude,latitude pair {lon:.6},{lat:.6}").into());
    }
    Ok((lon, lat))
}

/// Metres per unit.
fn unit(arg: &[u8]) -> Result<f64, Error> {
    [("m", 1.0), ("km", 1000.0), ("ft", 0.3048), ("mi", 1609.34)]
        .into_iter()
        .find(|(name, _)| eq_ignore_case(arg, name))
        .map(|(_, metres)| metres)
        .ok_or(Error::from(
            "ERR unsupported unit provided. please use M, KM, FT, MI",
        ))
}

/// A radius and its unit.
fn radius(args: &[Bytes]) -> Result<(Extent, f64), Error> {
    let r = parse_f64(&args[0]).ok_or(Error::from("ERR need numeric radius"))?;
    if r < 0.0 {
        return Err("ERR radius cannot be negative".into());
    }
    Ok((Extent::Radius(r), unit(&args[1])?))
}

/// A box's width, height and unit.
fn boxed(args: &[Bytes]) -> Result<(Extent, f64), Error> {
    let width = parse_f64(&args[0]).ok_or(Error::from("ERR need numeric width"))?;
    let height = parse_f64(&args[1]).ok_or(Error::from("ERR need numeric height"))?;
    if width < 0.0 || height < 0.0 {
        return Err("ERR height or width cannot be negative".into());
    }
    Ok((Extent::Box { width, height }, unit(&args[2])?))
}

/// The point a member stands for.
fn member_point(zset: &Zset, member: &[u8]) -> Option<(f64, f64)> {
    geohash::decode_score(zset.score(member)?)
}

pub fn geoadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mut nx, mut xx) = (false, false);
    let mut first = 2;
    while let Some(opt) = args.get(first) {
        if eq_ignore_case(opt, "nx") {
            nx = true;
        } else if eq_ignore_case(opt, "xx") {
            xx = true;
        } else if !eq_ignore_case(opt, "ch") {
            break;
        }
        first += 1;
    }
    if !(args.len() - first).is_multiple_of(3) || (nx && xx) {
        return Err(SYNTAX.into());
    }
    // As Redis: a ZADD of the points' scores, with the same options.
    let mut zadd = Vec::with_capacity(first + (args.len() - first) / 3 * 2);
    zadd.extend_from_slice(&args[..first]);
    for point in args[first..].chunks(3) {
        let (lon, lat) = lon_lat(point)?;
        let score = geohash::score(lon, lat).expect("coordinates checked");
        zadd.push(Bytes::from(itoa::Buffer::new().format(score).to_owned()));
        zadd.push(point[2].clone());
    }
    zsets::zadd(ctx, &zadd)
}

pub fn geopos(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let zset = zset_mut(&mut locked, &args[1])?;
    let points: Vec<_> = args[2..]
        .iter()
        .map(|m| zset.as_deref().and_then(|z| member_point(z, m)))
        .collect();
    drop(locked);
    ctx.reply.array(points.len());
    for point in points {
        match point {
            Some((lon, lat)) => {
                ctx.reply.array(2);
                ctx.reply.double_text(&format_long_double_human(lon));
                ctx.reply.double_text(&format_long_double_human(lat));
            }
            None => ctx.reply.null_array(),
        }
    }
    Ok(())
}

pub fn geohash(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let zset = zset_mut(&mut locked, &args[1])?;
    let hashes: Vec<_> = args[2..]
        .iter()
        .map(|m| {
            zset.as_deref()
                .and_then(|z| geohash::standard_geohash(z.score(m)?))
        })
        .collect();
    drop(locked);
    ctx.reply.array(hashes.len());
    for hash in hashes {
        match hash {
            Some(text) => ctx.reply.bulk(&text),
            None => ctx.reply.null(),
        }
    }
    Ok(())
}

pub fn geodist(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let to_metres = match args.len() {
        4 => 1.0,
        5 => unit(&args[4])?,
        _ => return Err(SYNTAX.into()),
    };
    let db = ctx.db();
    let mut locked = db.lock(&args[1]);
    let points = zset_mut(&mut locked, &args[1])?
        .and_then(|z| Some((member_point(z, &args[2])?, member_point(z, &args[3])?)));
    drop(locked);
    match points {
        Some(((lon1, lat1), (lon2, lat2))) => {
            let d = geohash::distance(lon1, lat1, lon2, lat2) / to_metres;
            ctx.reply.bulk(format_fixed4(d).as_bytes());
        }
        None => ctx.reply.null(),
    }
    Ok(())
}

/// Which search command runs: where its arguments start and what it accepts.
#[derive(Clone, Copy, PartialEq)]
enum SearchCommand {
    /// GEORADIUS[_RO]: centre and radius first; STORE only when `store` is allowed.
    Radius { store: bool },
    /// GEORADIUSBYMEMBER[_RO].
    ByMember { store: bool },
    /// GEOSEARCH, or GEOSEARCHSTORE when `store`.
    GeoSearch { store: bool },
}

#[derive(Clone, Copy, PartialEq)]
enum Order {
    None,
    Asc,
    Desc,
}

/// A point found, with its distance from the centre in metres.
struct Found {
    member: Vec<u8>,
    score: f64,
    longitude: f64,
    latitude: f64,
    distance: f64,
}

/// The points of `zset` inside `shape`, cell by cell in Redis's order; at most `limit`
/// (ANY) when not 0.
fn search(zset: &Zset, shape: &Shape, limit: usize) -> Vec<Found> {
    let mut found = Vec::new();
    for cell in shape.cells() {
        if limit != 0 && found.len() >= limit {
            break;
        }
        let (min, max) = geohash::score_range(cell);
        let (min, max) = (min as f64, max as f64);
        let start = zset.count_before(|score, _| score >= min);
        let end = zset.count_before(|score, _| score >= max);
        zset.visit_range(start, end, false, |member, score| {
            if limit != 0 && found.len() >= limit {
                return;
            }
            let Some((longitude, latitude)) = geohash::decode_score(score) else {
                return;
            };
            if let Some(distance) = shape.distance_if_within(longitude, latitude) {
                found.push(Found {
                    member: member.to_vec(),
                    score,
                    longitude,
                    latitude,
                    distance,
                });
            }
        });
    }
    found
}

pub fn georadius(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    radius_generic(ctx, args, SearchCommand::Radius { store: true })
}

pub fn georadius_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    radius_generic(ctx, args, SearchCommand::Radius { store: false })
}

pub fn georadiusbymember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    radius_generic(ctx, args, SearchCommand::ByMember { store: true })
}

pub fn georadiusbymember_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    radius_generic(ctx, args, SearchCommand::ByMember { store: false })
}

pub fn geosearch(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    radius_generic(ctx, args, SearchCommand::GeoSearch { store: false })
}

pub fn geosearchstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    radius_generic(ctx, args, SearchCommand::GeoSearch { store: true })
}

/// Redis's `georadiusGeneric`: every search command, its checks in Redis's order.
fn radius_generic(ctx: &mut Ctx, args: &[Bytes], kind: SearchCommand) -> CmdResult {
    let source = if kind == (SearchCommand::GeoSearch { store: true }) {
        &args[2]
    } else {
        &args[1]
    };
    let db = ctx.db();
    let mut locked = db.lock(source);
    let mut zset = zset_mut(&mut locked, source)?.map(|z| &*z);
    let mut center = None;
    let mut extent = None;
    let mut store_key: Option<&Bytes> = None;
    let mut store_dist = false;
    let base = match kind {
        SearchCommand::Radius { .. } => {
            center = Some(lon_lat(&args[2..4])?);
            extent = Some(radius(&args[4..6])?);
            6
        }
        SearchCommand::ByMember { .. } => {
            if let Some(z) = zset {
                center = Some(member_point(z, &args[2]).ok_or(Error::from(BAD_MEMBER))?);
                extent = Some(radius(&args[3..5])?);
            }
            5
        }
        SearchCommand::GeoSearch { store } => {
            if store {
                store_key = Some(&args[1]);
                3
            } else {
                2
            }
        }
    };
    let is_search = matches!(kind, SearchCommand::GeoSearch { .. });
    let can_store = matches!(
        kind,
        SearchCommand::Radius { store: true } | SearchCommand::ByMember { store: true }
    );
    let (mut with_dist, mut with_hash, mut with_coord, mut any) = (false, false, false, false);
    let (mut from_member, mut from_lonlat, mut by_radius, mut by_box) =
        (false, false, false, false);
    let mut order = Order::None;
    let mut count = 0usize;
    let rest = &args[base..];
    let mut i = 0;
    while i < rest.len() {
        let arg = &rest[i];
        let left = rest.len() - i - 1;
        if eq_ignore_case(arg, "withdist") {
            with_dist = true;
        } else if eq_ignore_case(arg, "withhash") {
            with_hash = true;
        } else if eq_ignore_case(arg, "withcoord") {
            with_coord = true;
        } else if eq_ignore_case(arg, "any") {
            any = true;
        } else if eq_ignore_case(arg, "asc") {
            order = Order::Asc;
        } else if eq_ignore_case(arg, "desc") {
            order = Order::Desc;
        } else if eq_ignore_case(arg, "count") && left >= 1 {
            let n = parse_i64(&rest[i + 1]).ok_or(Error::from(NOT_INTEGER))?;
            if n <= 0 {
                return Err("ERR COUNT must be > 0".into());
            }
            count = n as usize;
            i += 1;
        } else if (eq_ignore_case(arg, "store") || eq_ignore_case(arg, "storedist"))
            && left >= 1
            && can_store
        {
            store_key = Some(&rest[i + 1]);
            store_dist = eq_ignore_case(arg, "storedist");
            i += 1;
        } else if eq_ignore_case(arg, "storedist")
            && kind == (SearchCommand::GeoSearch { store: true })
        {
            store_dist = true;
        } else if eq_ignore_case(arg, "frommember") && left >= 1 && is_search && !from_lonlat {
            if let Some(z) = zset {
                center = Some(member_point(z, &rest[i + 1]).ok_or(Error::from(BAD_MEMBER))?);
            }
            from_member = true;
            i += 1;
        } else if eq_ignore_case(arg, "fromlonlat") && left >= 2 && is_search && !from_member {
            center = Some(lon_lat(&rest[i + 1..i + 3])?);
            from_lonlat = true;
            i += 2;
        } else if eq_ignore_case(arg, "byradius") && left >= 2 && is_search && !by_box {
            extent = Some(radius(&rest[i + 1..i + 3])?);
            by_radius = true;
            i += 2;
        } else if eq_ignore_case(arg, "bybox") && left >= 3 && is_search && !by_radius {
            extent = Some(boxed(&rest[i + 1..i + 4])?);
            by_box = true;
            i += 3;
        } else {
            return Err(SYNTAX.into());
        }
        i += 1;
    }
    if store_key.is_some() && (with_dist || with_hash || with_coord) {
        let what = if kind == (SearchCommand::GeoSearch { store: true }) {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )
        .into());
    }
    let name = String::from_utf8_lossy(&args[0]);
    if is_search && !(from_member || from_lonlat) {
        return Err(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )
        .into());
    }
    if is_search && !(by_radius || by_box) {
        return Err(
            format!("ERR exactly one of BYRADIUS and BYBOX can be specified for {name}").into(),
        );
    }
    if any && count == 0 {
        return Err("ERR the ANY argument requires COUNT argument".into());
    }
    let (Some(z), Some((longitude, latitude)), Some((extent, unit))) =
        (zset.take(), center, extent)
    else {
        drop(locked);
        match store_key {
            Some(dst) => zsets::store(ctx, dst, &[], store_event(kind)),
            None => ctx.reply.array(0),
        }
        return Ok(());
    };
    if count != 0 && order == Order::None && !any {
        order = Order::Asc;
    }
    let shape = Shape {
        longitude,
        latitude,
        extent,
        unit,
    };
    let mut found = search(z, &shape, if any { count } else { 0 });
    drop(locked);
    match order {
        Order::Asc => found.sort_by(|a, b| a.distance.total_cmp(&b.distance)),
        Order::Desc => found.sort_by(|a, b| b.distance.total_cmp(&a.distance)),
        Order::None => {}
    }
    if count != 0 {
        found.truncate(count);
    }
    for point in &mut found {
        point.distance /= unit;
    }
    match store_key {
        None => reply_found(ctx, &found, with_dist, with_hash, with_coord),
        Some(dst) => {
            let entries: Vec<_> = found
                .into_iter()
                .map(|point| {
                    let score = if store_dist {
                        point.distance
                    } else {
                        point.score
                    };
                    (point.member, score)
                })
                .collect();
            zsets::store(ctx, dst, &entries, store_event(kind));
        }
    }
    Ok(())
}

/// The keyspace event of a search that stores its result.
fn store_event(kind: SearchCommand) -> &'static str {
    if matches!(kind, SearchCommand::GeoSearch { .. }) {
        "geosearchstore"
    } else {
        "georadiusstore"
    }
}

fn reply_found(ctx: &mut Ctx, found: &[Found], with_dist: bool, with_hash: bool, with_coord: bool) {
    let extras = with_dist as usize + with_hash as usize + with_coord as usize;
    ctx.reply.array(found.len());
    for point in found {
        if extras > 0 {
            ctx.reply.array(extras + 1);
        }
        ctx.reply.bulk(&point.member);
        if with_dist {
            ctx.reply.bulk(format_fixed4(point.distance).as_bytes());
        }
        if with_hash {
            ctx.reply.int(point.score as i64);
        }
        if with_coord {
            ctx.reply.array(2);
            ctx.reply
                .double_text(&format_long_double_human(point.longitude));
            ctx.reply
                .double_text(&format_long_double_human(point.latitude));
        }
    }
}
