"""Traditional -> simplified Chinese for Whisper output (Mandarin transcripts are simplified).

Whisper steered by a simplified-Chinese prompt mostly writes simplified characters already;
this table (the ~480 most frequent characters whose simplified form differs) converts the
stragglers character by character. It is a fallback, not a full OpenCC conversion: phrase-level
ambiguities (e.g. 乾/幹 -> 干) are not handled.
"""

from __future__ import annotations

_PAIRS = (
    "來来個个們们備备傳传價价儀仪億亿優优兒儿內内兩两冊册則则剛刚動动務务勞劳勢势區区協协參参員员問问單单嗎吗國国圍围園园圓圆圖图團团報报場场壞坏夢梦奪夺婦妇媽妈孫孙"
    "學学實实寧宁審审寫写寬宽寶宝將将專专對对導导層层屬属島岛師师帶带幣币幫帮幾几廣广廳厅張张強强彈弹後后從从復复愛爱態态應应戶户掃扫換换揮挥損损搖摇撥拨擁拥擇择擊击"
    "擔担據据擬拟擴扩攝摄敗败數数斷断於于時时暫暂曆历書书會会東东條条楊杨業业極极構构樂乐樓楼標标樣样樹树橋桥機机檢检權权歡欢歲岁歷历歸归殺杀氣气決决沒没況况淚泪減减"
    "測测準准溝沟溫温滿满漢汉漲涨濕湿濟济灣湾災灾為为無无煩烦熱热燈灯爭争爾尔狀状猶犹獎奖獨独獲获現现瑪玛環环產产畢毕畫画異异當当療疗癒愈發发皺皱盡尽監监盤盘眾众碩硕"
    "確确碼码礎础禍祸禪禅禮礼稅税種种稱称穀谷穩稳窮穷競竞筆笔筍笋節节範范簡简簽签籃篮糧粮糾纠紀纪約约紅红納纳紐纽紙纸級级紛纷細细終终組组結结絕绝絡络給给統统絲丝經经"
    "綠绿維维網网緊紧緒绪線线編编練练縣县縮缩總总績绩織织繼继續续罰罚罷罢義义習习聖圣聞闻聯联聰聪聲声職职聽听肅肃腦脑膽胆臉脸臨临臺台與与興兴舊旧艱艰莊庄華华萬万葉叶"
    "蔣蒋薦荐藍蓝藝艺藥药蘇苏蘭兰處处虛虚號号蟲虫蠻蛮術术衛卫衝冲補补裝装製制襲袭見见規规視视親亲覺觉覽览觀观訂订計计訊讯記记訪访設设許许訴诉診诊評评詞词詢询試试話话"
    "該该誌志認认語语誠诚誤误說说誰谁課课調调談谈請请論论諾诺謀谋講讲謝谢證证識识譯译議议護护讀读變变讓让讚赞豐丰貓猫貝贝負负財财貨货責责貴贵買买費费貼贴貿贸賀贺資资"
    "賓宾賞赏賣卖質质賬账賺赚購购賽赛贈赠贏赢趕赶趙赵跡迹踐践躍跃車车軍军軟软較较載载輔辅輕轻輛辆輪轮輸输轉转辦办辭辞農农這这連连週周進进遊游運运過过達达違违遞递遠远"
    "適适遲迟遷迁選选遺遗還还邊边郵邮鄉乡鄰邻醫医醬酱釋释針针鈴铃銀银銅铜銷销鋼钢錄录錢钱錯错錶表鍋锅鍵键鎖锁鏡镜鐘钟鐵铁長长門门閃闪閉闭開开閒闲間间閣阁閱阅闆板闊阔"
    "關关陣阵陰阴陳陈陸陆陽阳隊队際际隨随險险隱隐雖虽雙双雜杂雞鸡離离難难雲云電电靈灵靜静響响頁页頂顶項项順顺須须預预頓顿領领頭头頻频題题額额顏颜願愿類类顧顾顯显風风"
    "颱台飛飞飯饭飲饮餘余館馆饒饶馬马駐驻駕驾騎骑騙骗驗验驚惊骯肮髒脏體体髮发鬆松鬥斗鬧闹魚鱼魯鲁鮮鲜鳥鸟鳳凤鴨鸭鹽盐麗丽麥麦麵面麼么黃黄點点黨党齊齐齒齿齡龄龍龙龜龟"
)

TRADITIONAL_TO_SIMPLIFIED: dict[str, str] = {_PAIRS[i]: _PAIRS[i + 1]
                                             for i in range(0, len(_PAIRS), 2)}
_TABLE = str.maketrans(TRADITIONAL_TO_SIMPLIFIED)


def to_simplified(text: str) -> str:
    """``text`` with the traditional characters of the table replaced by simplified ones."""
    return text.translate(_TABLE)
