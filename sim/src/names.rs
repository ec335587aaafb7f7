//! Text for generated orders, shared by the simulators: Chinese product, shop and streamer names, a
//! few with ASCII quotes or emoji so that escaping and UTF-8 handling are exercised.
//!
//! Everything here is a pure function of the RNG it is given, so worlds stay deterministic.

use rand::seq::IndexedRandom;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

const PREFIXES: &[&str] = &[
    "",
    "",
    "",
    "【限时秒杀】",
    "【官方正品】",
    "【🔥爆款】",
    "网红同款",
    "新款",
    "加厚",
    "\"老字号\"",
    "【买一送一】",
    "夏季",
    "冬季加绒",
    "✨",
];

const PRODUCTS: &[&str] = &[
    "巴旦木瓜子仁酥",
    "葵花籽仁坚果",
    "纯棉四件套",
    "保温杯316不锈钢",
    "无线蓝牙耳机",
    "手撕面包整箱",
    "螺蛳粉",
    "洗衣凝珠",
    "婴儿湿巾",
    "防晒霜SPF50+",
    "阔腿裤女",
    "运动鞋男",
    "抽纸原木",
    "牛肉干",
    "茶叶礼盒",
    "手机壳",
    "电动牙刷",
    "猫粮成猫",
    "空气炸锅",
    "口红礼盒",
    "儿童绘本",
    "自热火锅",
    "洗发水控油",
    "羽绒服",
    "云南鲜花饼",
];

const SPECS: &[&str] = &[
    "",
    "",
    "30包",
    "500ml",
    "2件装",
    "整箱24瓶",
    "3斤装",
    "大容量",
    "家庭装",
    " 🎁",
    "(赠品随机)",
];

const SHOPS: &[&str] = &[
    "董小姐甄选食品店",
    "好物优选旗舰店",
    "小王的\"好物\"店",
    "🔥爆款工厂店",
    "三只松鼠官方旗舰店",
    "良品生活馆",
    "江南布衣坊",
    "云端数码专营店",
    "宝宝树母婴店",
    "山里人家土特产",
    "橙心家居",
    "萌宠之家🐱",
    "老街茶庄",
    "潮流运动城",
    "美妆小铺",
    "快乐厨房电器",
    "书香童年",
    "西北牧场牛肉",
    "洁净日用百货",
    "暖冬服饰",
];

const AUTHORS: &[&str] = &[
    "中国邮政·合肥邮政",
    "小杨哥的直播间",
    "美食探店阿珍",
    "穿搭日记Lily",
    "数码老王",
    "萌娃妈妈",
    "乡村守护人",
    "健身教练阿强💪",
    "\"好物\"推荐官",
    "深夜食堂",
];

const EXTERNAL: &[&str] = &["live23", "wx_group_7", "qq_12", "sim", "pid_a1b2", "ch-618"];

/// How many shops the world draws from.
pub(crate) fn shop_count() -> usize {
    SHOPS.len()
}

/// The name of shop `i` (wrapping).
pub(crate) fn shop_name(i: usize) -> &'static str {
    SHOPS[i % SHOPS.len()]
}

fn pick(rng: &mut ChaCha8Rng, from: &[&'static str]) -> &'static str {
    from.choose(rng).copied().unwrap_or("")
}

pub(crate) fn product(rng: &mut ChaCha8Rng) -> String {
    let mut name = String::new();
    name.push_str(pick(rng, PREFIXES));
    name.push_str(pick(rng, PRODUCTS));
    name.push_str(pick(rng, SPECS));
    name
}

pub(crate) fn author(rng: &mut ChaCha8Rng) -> String {
    pick(rng, AUTHORS).to_string()
}

pub(crate) fn external_info(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..10) {
        0..=3 => String::new(),
        4..=5 => format!("u{}", rng.random_range(1..100_000)),
        _ => pick(rng, EXTERNAL).to_string(),
    }
}
